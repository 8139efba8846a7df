//! The EC2 actions a playbook names. The instance actions share one
//! discovery (`discover`: instances by region, then each instance planned by
//! its action); locking snapshots has its own (`snapshots`).

use super::*;
use crate::actions::{Action, Runs};
use crate::spec::{LockParams, NoParams, SnapshotParams};

pub struct SnapshotVolumes;

impl Action for SnapshotVolumes {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.snapshot_volumes",
        summary: "Snapshot every EBS volume of each instance (crash-consistent per instance), tagged at creation.",
        targets: &[TargetKind::Instances],
        params: &[(
            "tags",
            "tags put on each snapshot at creation, such as case: \"{{ case_id }}\"",
        )],
        calls: &["ec2:CreateSnapshots (one per instance, TagSpecifications)"],
        reversibility: Reversibility::Irreversible(
            "snapshots are evidence: breakglass never deletes them",
        ),
        notes: &["Run it before any stop or isolation of the same instances."],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = SnapshotParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &SnapshotParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover(ctx, step, sink).await
    }
}

pub struct IsolateInstances;

impl Action for IsolateInstances {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.isolate_instances",
        summary: "Move every network interface to a rule-less quarantine security group, via an allow-all group that drops tracked connections.",
        targets: &[TargetKind::Instances],
        params: &[],
        calls: &[
            "ec2:CreateSecurityGroup + RevokeSecurityGroupEgress (once per VPC)",
            "ec2:ModifyNetworkInterfaceAttribute Groups=[flush] then Groups=[quarantine]",
        ],
        reversibility: Reversibility::Reversible(
            "ModifyNetworkInterfaceAttribute with the recorded original groups",
        ),
        notes: &[
            "The original groups of every interface are recorded in the audit log; an interface whose second move fails goes back to them.",
            "Each interface uses its own VPC's groups; the flush group allows all traffic, IPv4 and IPv6, both ways, so that tracked flows become untracked and drop on the move to the empty group.",
            "Always tracked, whatever the groups (EC2 User Guide, Security group connection tracking): ICMP, and flows through Network and Gateway Load Balancers, NAT gateways, transit gateways, PrivateLink endpoints, Global Accelerator and egress-only internet gateways. Only a network ACL (stateless, subnet-wide) cuts those at once.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover(ctx, step, sink).await
    }
}

pub struct EnableTerminationProtection;

impl Action for EnableTerminationProtection {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.enable_termination_protection",
        summary: "Make termination impossible: termination protection, a shutdown from inside that stops rather than terminates, volumes kept if it ever goes; and stop protection, so an API stop cannot take its memory.",
        targets: &[TargetKind::Instances],
        params: &[],
        calls: &[
            "ec2:ModifyInstanceAttribute DisableApiTermination=true",
            "ec2:ModifyInstanceAttribute DisableApiStop=true",
            "ec2:ModifyInstanceAttribute InstanceInitiatedShutdownBehavior=stop",
            "ec2:ModifyInstanceAttribute BlockDeviceMapping DeleteOnTermination=false (each attached volume set to true)",
        ],
        reversibility: Reversibility::Reversible(
            "ModifyInstanceAttribute back to the recorded flags, shutdown behaviour and DeleteOnTermination",
        ),
        notes: &[
            "DisableApiTermination alone does not stop a termination started by a shutdown inside the instance when its shutdown behaviour is terminate (EC2 User Guide, termination protection), and volumes with DeleteOnTermination go with it.",
            "Stop protection (DisableApiStop) keeps an API stop from taking the instance's memory: the attacker's way to rewrite its user data (Stratus execution.ec2-user-data). A shutdown from inside the instance still stops it, and a principal allowed ec2:ModifyInstanceAttribute can lift it: isolate the instance and cut the attacker too. It refuses ec2.stop_instances as well: a playbook that must stop an instance stops it before this step.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = NoParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover(ctx, step, sink).await
    }
}

pub struct StopInstances;

impl Action for StopInstances {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.stop_instances",
        summary: "Stop instances, one call each.",
        targets: &[TargetKind::Instances],
        params: &[],
        calls: &["ec2:StopInstances (one instance per call)"],
        reversibility: Reversibility::Irreversible(
            "StartInstances restarts it, but the memory of the running instance is lost for good",
        ),
        notes: &[
            "Stopping destroys memory evidence: snapshot first, and prefer isolation.",
            "An instance whose snapshot failed earlier in the run is not stopped.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = NoParams;

    fn irreversible(_: &NoParams) -> Option<&'static str> {
        Some("stopping an instance destroys its memory, which may be evidence")
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &NoParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover(ctx, step, sink).await
    }
}

pub struct DetachInstanceProfiles;

impl Action for DetachInstanceProfiles {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.detach_instance_profiles",
        summary: "Detach each instance's IAM instance profile and revoke the sessions of the role behind it; or, with `mode: guard`, keep it and deny its credentials off the instance.",
        targets: &[TargetKind::Instances],
        params: &[(
            "mode",
            "detach (default) or guard: keep the profile, deny the role's instance credentials unless they come through a VPC endpoint of their VPC from their own IP",
        )],
        calls: &[
            "ec2:DisassociateIamInstanceProfile",
            "iam:PutRolePolicy breakglass-revoke-older-sessions (the profile's role)",
            "iam:PutRolePolicy breakglass-instance-guard (mode: guard)",
        ],
        reversibility: Reversibility::Reversible(
            "AssociateIamInstanceProfile with the recorded profile",
        ),
        notes: &[
            "Detaching does not end credentials already handed to the instance: the role's sessions are revoked in the same step.",
            "The revocation hits every holder of that role, not only this instance.",
            "mode: guard needs VPC endpoints: on the role, it denies every request of its instance credentials, on every instance using it, that does not come through a VPC endpoint in the instance's VPC from its primary private IPv4 (IAM User Guide, aws:Ec2InstanceSourcePrivateIPv4): public endpoints, other regions, IPv6 and secondary addresses included.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = super::profiles::DetachParams;

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        _: &super::profiles::DetachParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        discover(ctx, step, sink).await
    }
}

pub struct LockSnapshots;

impl Action for LockSnapshots {
    const INFO: ActionInfo = ActionInfo {
        id: "ec2.lock_snapshots",
        summary: "Lock snapshots against deletion (the Code Spaces lesson: protect the backups).",
        targets: &[TargetKind::Snapshots],
        params: &[
            (
                "mode",
                "governance (default; ec2:UnlockSnapshot can lift it) or compliance (nobody can, until it expires)",
            ),
            (
                "duration_days",
                "lock length in days, 1 to 36500 (default 30)",
            ),
            (
                "cool_off_hours",
                "compliance only: 1 to 72 hours in which the lock can still be lifted (default: none, binding at once)",
            ),
        ],
        calls: &["ec2:LockSnapshot"],
        reversibility: Reversibility::Reversible(
            "governance: UnlockSnapshot; compliance: irreversible until the lock expires",
        ),
        notes: &[
            "Compliance mode cannot be undone by anyone, the root user included: write it explicitly. With cool_off_hours, rollback can still lift it within those hours.",
            "A governance lock can be lifted by anyone with ec2:UnlockSnapshot, the management account's admins included (no SCP binds them): it stops a hurried attacker, not a patient one.",
        ],
    };
    const RUNS: Runs = Runs::InRegions;
    type Params = LockParams;

    fn check(p: &LockParams) -> Result<(), String> {
        if !(1..=36500).contains(&p.duration_days) {
            return Err(format!(
                "duration_days {} is outside 1..36500",
                p.duration_days
            ));
        }
        // LockSnapshot: "If you are locking the snapshot in governance mode,
        // omit this parameter ... Allowed values: Min 1, max 72."
        match (p.cool_off_hours, p.mode) {
            (Some(_), LockModeSpec::Governance) => Err(
                "cool_off_hours applies to compliance mode only (a governance lock can always be lifted)".into(),
            ),
            (Some(h), _) if !(1..=72).contains(&h) => {
                Err(format!("cool_off_hours {h} is outside 1..72"))
            }
            _ => Ok(()),
        }
    }

    fn irreversible(p: &LockParams) -> Option<&'static str> {
        (p.mode == LockModeSpec::Compliance).then_some(
            "a compliance-mode lock cannot be lifted by anyone, the root user included, until it expires",
        )
    }

    async fn discover(
        ctx: &Ctx,
        step: &BoundStep,
        p: &LockParams,
        sink: &Sink,
    ) -> Result<Vec<String>, AwsError> {
        let found = discover_locks(ctx, step, p).await?;
        sink.emit_all(found.planned);
        Ok(found.notes)
    }
}
