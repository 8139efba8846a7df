//! What a selector asks for, decided once from the playbook's words.
//!
//! A selector either reaches every resource of its kind (`all: true`, or only
//! filters such as `path_prefix` and `tags`), or it names resources. The two
//! are different variants, so a named resource that does not exist can only
//! become a "missing" item for that name: it can never fall through to
//! "every user in the account", whatever the runtime finds.

use std::collections::BTreeMap;

use crate::spec::{InstanceSelector, RoleSelector, SnapshotSelector, UserSelector};

/// Conditions that narrow a selection; they never widen one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrincipalFilters {
    pub path_prefix: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub exclude: Vec<String>,
}

/// Which users or roles a step reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalCriteria {
    /// Every principal of the kind, narrowed by the filters.
    Every(PrincipalFilters),
    /// Exactly these: each is found or reported missing. `key_ids` name
    /// users through their access keys.
    Named {
        names: Vec<String>,
        key_ids: Vec<String>,
        filters: PrincipalFilters,
    },
}

impl PrincipalCriteria {
    pub fn filters(&self) -> &PrincipalFilters {
        match self {
            PrincipalCriteria::Every(f) | PrincipalCriteria::Named { filters: f, .. } => f,
        }
    }
}

impl UserSelector {
    pub fn criteria(&self) -> PrincipalCriteria {
        let filters = PrincipalFilters {
            path_prefix: self.path_prefix.clone(),
            tags: self.tags.clone(),
            exclude: self.exclude.clone(),
        };
        if self.names.is_empty() && self.access_key_ids.is_empty() {
            PrincipalCriteria::Every(filters)
        } else {
            PrincipalCriteria::Named {
                names: self.names.clone(),
                key_ids: self.access_key_ids.clone(),
                filters,
            }
        }
    }
}

impl RoleSelector {
    pub fn criteria(&self) -> PrincipalCriteria {
        let filters = PrincipalFilters {
            path_prefix: self.path_prefix.clone(),
            tags: self.tags.clone(),
            exclude: self.exclude.clone(),
        };
        if self.names.is_empty() {
            PrincipalCriteria::Every(filters)
        } else {
            PrincipalCriteria::Named {
                names: self.names.clone(),
                key_ids: Vec::new(),
                filters,
            }
        }
    }
}

/// Conditions that narrow an instance selection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceFilters {
    /// Compared exactly after the listing: a `*` in a value is a character,
    /// not EC2's filter wildcard.
    pub tags: BTreeMap<String, String>,
    pub vpc_ids: Vec<String>,
    pub exclude: Vec<String>,
}

/// Which instances a step reaches, in every region it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceCriteria {
    Every(InstanceFilters),
    /// Exactly these ids: one that no region knows (or that is terminated)
    /// is reported missing.
    Named {
        ids: Vec<String>,
        filters: InstanceFilters,
    },
}

impl InstanceSelector {
    pub fn criteria(&self) -> InstanceCriteria {
        let filters = InstanceFilters {
            tags: self.tags.clone(),
            vpc_ids: self.vpc_ids.clone(),
            exclude: self.exclude.clone(),
        };
        if self.ids.is_empty() {
            InstanceCriteria::Every(filters)
        } else {
            InstanceCriteria::Named {
                ids: self.ids.clone(),
                filters,
            }
        }
    }
}

impl InstanceCriteria {
    pub fn filters(&self) -> &InstanceFilters {
        match self {
            InstanceCriteria::Every(f) | InstanceCriteria::Named { filters: f, .. } => f,
        }
    }

    /// Whether an instance with these tags and VPC is selected (ids aside).
    pub fn admits(&self, id: &str, vpc: &str, tags: &BTreeMap<String, String>) -> bool {
        let f = self.filters();
        !f.exclude.iter().any(|x| x == id)
            && (f.vpc_ids.is_empty() || f.vpc_ids.iter().any(|v| v == vpc))
            && f.tags.iter().all(|(k, v)| tags.get(k) == Some(v))
    }
}

/// Which snapshots a step reaches. Unlike the other selectors its criteria
/// add up (a snapshot matching any is selected); only `ids` name snapshots
/// that must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotCriteria {
    /// Every snapshot the account owns.
    Every,
    Matching {
        /// Must each exist, else reported missing.
        ids: Vec<String>,
        tags: BTreeMap<String, String>,
        volume_ids: Vec<String>,
        /// Snapshots breakglass took of these instances (by its source tag).
        instance_ids: Vec<String>,
        created_by_run: bool,
    },
}

impl SnapshotSelector {
    pub fn criteria(&self) -> SnapshotCriteria {
        if self.all {
            SnapshotCriteria::Every
        } else {
            SnapshotCriteria::Matching {
                ids: self.ids.clone(),
                tags: self.tags.clone(),
                volume_ids: self.volume_ids.clone(),
                instance_ids: self.instance_ids.clone(),
                created_by_run: self.created_by_run,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_that_resolve_to_nobody_still_name_users() {
        let sel = UserSelector {
            access_key_ids: vec!["AKIAUNKNOWN000000000".into()],
            ..UserSelector::default()
        };
        assert!(
            matches!(sel.criteria(), PrincipalCriteria::Named { names, key_ids, .. }
            if names.is_empty() && key_ids.len() == 1)
        );
    }

    #[test]
    fn filters_alone_reach_every_principal_they_admit() {
        let sel = RoleSelector {
            path_prefix: Some("/app/".into()),
            ..RoleSelector::default()
        };
        assert!(
            matches!(sel.criteria(), PrincipalCriteria::Every(f) if f.path_prefix.as_deref() == Some("/app/"))
        );
        let sel = RoleSelector {
            names: vec![String::new()],
            ..RoleSelector::default()
        };
        assert!(matches!(sel.criteria(), PrincipalCriteria::Named { .. }));
    }

    #[test]
    fn instance_tags_compare_exactly() {
        let c = InstanceSelector {
            tags: [("env".to_string(), "*".to_string())].into(),
            ..InstanceSelector::default()
        }
        .criteria();
        let prod: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
        let star: BTreeMap<String, String> = [("env".to_string(), "*".to_string())].into();
        assert!(!c.admits("i-1", "vpc-1", &prod));
        assert!(c.admits("i-1", "vpc-1", &star));
    }
}
