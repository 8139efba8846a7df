//! What an attacker's move does: the kinds a scenario's `do:` names, each
//! with the Stratus Red Team technique it plays where there is one.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// A new access key for `user`.
    CreateAccessKey,
    /// Every inactive key of `user` made active again.
    ReactivateAccessKeys,
    /// AdministratorAccess attached to `user` or `role`.
    AttachAdminPolicy,
    /// Up to `count` snapshots in `region` deleted (all when no count).
    DeleteSnapshots,
    /// Up to `count` instances in `region` terminated (all when no count).
    TerminateInstances,
    /// A new instance in `region`.
    LaunchInstance,
    /// CloudTrail `trail` stops logging (the attacker going dark).
    StopLogging,
    /// CloudTrail `trail` keeps logging, but its event selectors leave every
    /// management event out (Stratus `cloudtrail-event-selectors`).
    MuteTrail,
    /// Up to `count` snapshots in `region` shared with the attacker's own
    /// account (all when no count), to copy out at leisure.
    ShareSnapshots,
    /// A console password for `user`, or a new one if it has one (Stratus
    /// `persistence.iam-create-user-login-profile`,
    /// `privilege-escalation.iam-update-user-login-profile`).
    CreateLoginProfile,
    /// Port 22 opened to the internet on the security groups of the
    /// instances in `region` (Stratus
    /// `exfiltration.ec2-security-group-open-port-22-ingress`).
    #[serde(rename = "open_port_22")]
    OpenPort22,
    /// A new user `user` (not one of the scenario's), AdministratorAccess
    /// attached and an access key made (Stratus
    /// `persistence.iam-create-admin-user`).
    CreateAdminUser,
    /// `role`'s trust policy opened to the attacker's own account (Stratus
    /// `persistence.iam-backdoor-role`).
    BackdoorRole,
    /// A new role `role` (not one of the scenario's) that the attacker's
    /// own account may assume, with AdministratorAccess (Stratus
    /// `persistence.iam-create-backdoor-role`).
    CreateBackdoorRole,
    /// A federation token minted with `user`'s access key: its session
    /// outlives the key, so deactivating the key does not end it (Stratus
    /// `persistence.sts-federation-token`).
    FederationToken,
    /// CloudTrail `trail` deleted (Stratus `defense-evasion.cloudtrail-delete`).
    DeleteTrail,
    /// Member account `account` leaves the organization, out from under
    /// every SCP (Stratus `defense-evasion.organizations-leave`).
    LeaveOrganization,
    /// Every object of `bucket` deleted in batches (`DeleteObjects`) and a
    /// ransom note left (Stratus `impact.s3-ransomware-batch-deletion`).
    S3RansomwareBatch,
    /// Every object of `bucket` deleted one by one and a ransom note left
    /// (Stratus `impact.s3-ransomware-individual-deletion`).
    S3RansomwareIndividual,
    /// Every object of `bucket` rewritten encrypted with the attacker's own
    /// key (SSE-C) and a ransom note left (Stratus
    /// `impact.s3-ransomware-client-side-encryption`).
    #[serde(rename = "s3_ransomware_sse_c")]
    S3RansomwareSseC,
    /// `bucket`'s policy opened to the attacker's own account (Stratus
    /// `exfiltration.s3-backdoor-bucket-policy`).
    BackdoorBucketPolicy,
    /// A lifecycle rule on `trail`'s bucket expiring its logs after a day
    /// (Stratus `defense-evasion.cloudtrail-lifecycle-rule`).
    ExpireTrailLogs,
    /// Up to `count` AMIs the account owns in `region` shared with the
    /// attacker's account (Stratus `exfiltration.ec2-share-ami`).
    ShareImages,
    /// Up to `count` AMIs the account owns in `region` deregistered (Stratus
    /// `impact.ec2-deregister-ami`).
    DeregisterImages,
    /// The Windows password data of up to `count` instances in `region`
    /// read (Stratus `credential-access.ec2-get-password-data`).
    GetPasswordData,
    /// Up to `count` instances in `region` stopped, given a script as user
    /// data and started again, which runs it (Stratus
    /// `execution.ec2-user-data`).
    ModifyUserData,
    /// The user data of up to `count` instances in `region` read, for the
    /// secrets left in it (Stratus `discovery.ec2-download-user-data`).
    DownloadUserData,
    /// Every VPC flow log in `region` deleted (Stratus
    /// `defense-evasion.vpc-remove-flow-logs`).
    RemoveFlowLogs,
    /// `user` signs in to the console with its password, without MFA
    /// (Stratus `initial-access.console-login-without-mfa`).
    ConsoleLogin,
}

impl MoveKind {
    pub fn id(self) -> &'static str {
        match self {
            MoveKind::CreateAccessKey => "create_access_key",
            MoveKind::ReactivateAccessKeys => "reactivate_access_keys",
            MoveKind::AttachAdminPolicy => "attach_admin_policy",
            MoveKind::DeleteSnapshots => "delete_snapshots",
            MoveKind::TerminateInstances => "terminate_instances",
            MoveKind::LaunchInstance => "launch_instance",
            MoveKind::StopLogging => "stop_logging",
            MoveKind::MuteTrail => "mute_trail",
            MoveKind::ShareSnapshots => "share_snapshots",
            MoveKind::CreateLoginProfile => "create_login_profile",
            MoveKind::OpenPort22 => "open_port_22",
            MoveKind::CreateAdminUser => "create_admin_user",
            MoveKind::BackdoorRole => "backdoor_role",
            MoveKind::CreateBackdoorRole => "create_backdoor_role",
            MoveKind::FederationToken => "federation_token",
            MoveKind::DeleteTrail => "delete_trail",
            MoveKind::LeaveOrganization => "leave_organization",
            MoveKind::S3RansomwareBatch => "s3_ransomware_batch",
            MoveKind::S3RansomwareIndividual => "s3_ransomware_individual",
            MoveKind::S3RansomwareSseC => "s3_ransomware_sse_c",
            MoveKind::BackdoorBucketPolicy => "backdoor_bucket_policy",
            MoveKind::ExpireTrailLogs => "expire_trail_logs",
            MoveKind::ShareImages => "share_images",
            MoveKind::DeregisterImages => "deregister_images",
            MoveKind::GetPasswordData => "get_password_data",
            MoveKind::ModifyUserData => "modify_user_data",
            MoveKind::DownloadUserData => "download_user_data",
            MoveKind::RemoveFlowLogs => "remove_flow_logs",
            MoveKind::ConsoleLogin => "console_login",
        }
    }
}
