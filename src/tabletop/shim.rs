//! What moto lacks, in front of it: a loopback proxy that answers EBS
//! snapshot locking (`LockSnapshot`, `UnlockSnapshot`,
//! `DescribeLockedSnapshots`) and the account-level block public access
//! settings for snapshots and AMIs from its own tables, keeps the SSE-C
//! block of a bucket's default encryption that moto drops, refuses
//! `DeleteSnapshot` on a locked snapshot as AWS does, answers centralized
//! root access (`super::roots`), and forwards everything else unchanged. Both the run and the attacker go through it,
//! so a tabletop shows whether the locks came in time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use super::roots::Roots;
use crate::Error;

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// snapshot id → (lock mode, duration in days, when the lock expires).
type Table = BTreeMap<String, (String, String, String)>;
type Locks = Arc<Mutex<Table>>;

/// (region, `Snapshot` or `Image`) → (state, who manages it): the
/// account-level block public access settings.
pub type Blocks = Arc<Mutex<BTreeMap<(String, String), (String, String)>>>;

/// Buckets whose default encryption blocks SSE-C writes. moto 5 keeps a
/// bucket's encryption rule but drops its `BlockedEncryptionTypes`, so the
/// shim remembers it from each `PutBucketEncryption` and puts it back into
/// `GetBucketEncryption` answers (S3 API reference, BlockedEncryptionTypes).
pub type SseC = Arc<Mutex<std::collections::BTreeSet<String>>>;

/// Accounts whose member role a scenario deleted: every `AssumeRole` into
/// a role there is refused, as AWS refuses a role that does not exist
/// (moto's `AssumeRole` needs no role at all: "the role does not need to
/// exist", moto/sts/models.py).
pub type Roleless = Arc<Mutex<std::collections::BTreeSet<String>>>;

/// Permission sets changed since they were last provisioned. moto
/// provisions nothing and ignores `ListAccountsForProvisionedPermissionSet`'s
/// `ProvisioningStatus`; AWS reports an account
/// `LATEST_PERMISSION_SET_NOT_PROVISIONED` until the permission set's latest
/// version is provisioned there ("you will need to call
/// ProvisionPermissionSet after this action to apply the corresponding IAM
/// policy updates to all assigned accounts", IAM Identity Center API
/// reference, PutInlinePolicyToPermissionSet).
pub type Unprovisioned = Arc<Mutex<std::collections::BTreeSet<String>>>;

const SSE_C_BLOCKED: &str =
    "<BlockedEncryptionTypes><EncryptionType>SSE-C</EncryptionType></BlockedEncryptionTypes>";

/// The method and bucket of a path-style `/{bucket}?{sub}` request.
fn bucket_request(head: &str, sub: &str) -> Option<(String, String)> {
    let mut words = head.lines().next()?.split_whitespace();
    let (method, target) = (words.next()?, words.next()?);
    let (path, query) = target.split_once('?')?;
    let eq = format!("{sub}=");
    if !query.split('&').any(|q| q == sub || q.starts_with(&eq)) {
        return None;
    }
    let bucket = path.trim_start_matches('/').split('/').next()?;
    (!bucket.is_empty()).then(|| (method.to_string(), bucket.to_string()))
}

/// Before a request goes to moto: what a `PutBucketEncryption` or
/// `DeleteBucketEncryption` says about SSE-C.
pub fn note_sse_c(head: &str, body: &str, sse_c: &SseC) {
    let Some((method, bucket)) = bucket_request(head, "encryption") else {
        return;
    };
    let Ok(mut blocked) = sse_c.lock() else {
        return;
    };
    match method.as_str() {
        "PUT" if body.contains("<EncryptionType>SSE-C</EncryptionType>") => {
            blocked.insert(bucket);
        }
        "PUT" | "DELETE" => {
            blocked.remove(&bucket);
        }
        _ => {}
    }
}

/// S3 refuses an SSE-C write to a bucket that blocks SSE-C: "any
/// PutObject, CopyObject, PostObject, or Multipart Upload or replication
/// requests that specify SSE-C encryption will be rejected with an HTTP 403
/// AccessDenied error" (S3 User Guide, "Blocking or unblocking SSE-C for a
/// general purpose bucket"). moto ignores SSE-C altogether. Path-style
/// requests only: the tabletop's own clients use them.
pub fn sse_c_refusal(head: &str, sse_c: &SseC) -> Option<String> {
    let mut words = head.lines().next()?.split_whitespace();
    let (method, target) = (words.next()?, words.next()?);
    let path = target.split('?').next()?;
    let (bucket, key) = path.trim_start_matches('/').split_once('/')?;
    let writes_sse_c = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("x-amz-server-side-encryption-customer-algorithm:")
    });
    let blocked = sse_c.lock().is_ok_and(|b| b.contains(bucket));
    (matches!(method, "PUT" | "POST") && !key.is_empty() && writes_sse_c && blocked).then(|| {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied: the bucket blocks writes with SSE-C</Message><RequestId>shim</RequestId></Error>".to_string()
    })
}

/// moto's S3 answers where they differ from AWS's: a `GetBucketEncryption`
/// with the SSE-C block put back into its rule when the bucket has one, and
/// the `GetBucketVersioning` of a never-versioned bucket, which moto roots
/// in `GetBucketVersioningResponse` where S3 answers an empty
/// `VersioningConfiguration` ("does not return a versioning state value",
/// S3 API reference).
pub fn patch_answer(head: &str, response: Vec<u8>, sse_c: &SseC) -> Vec<u8> {
    let blocked = bucket_request(head, "encryption").is_some_and(|(method, bucket)| {
        method == "GET" && sse_c.lock().is_ok_and(|b| b.contains(&bucket))
    });
    let versioning = bucket_request(head, "versioning").is_some_and(|(m, _)| m == "GET");
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response;
    };
    let body = String::from_utf8_lossy(&response[split + 4..]).into_owned();
    let provisioning = json_target(head).as_deref() == Some("ProvisionPermissionSet");
    let body = if versioning && body.contains("<GetBucketVersioningResponse") {
        body.replace("GetBucketVersioningResponse", "VersioningConfiguration")
    } else if provisioning && body.contains("\"SUCCEEDED\"") {
        // AWS provisions asynchronously ("IN_PROGRESS", then
        // DescribePermissionSetProvisioningStatus); moto answers SUCCEEDED
        // at once and has no Describe. Answered as AWS does, so the
        // following-up is exercised: see `permission_sets`.
        body.replacen("\"SUCCEEDED\"", "\"IN_PROGRESS\"", 1)
    } else if blocked && body.contains("</Rule>") && !body.contains("<BlockedEncryptionTypes>") {
        body.replacen("</Rule>", &format!("{SSE_C_BLOCKED}</Rule>"), 1)
    } else if body.contains("<DescribeRegionsResponse") {
        enabled_regions_only(&body)
    } else {
        return response;
    };
    let head: Vec<String> = String::from_utf8_lossy(&response[..split])
        .lines()
        .map(
            |l| match l.to_ascii_lowercase().starts_with("content-length:") {
                true => format!("Content-Length: {}", body.len()),
                false => l.to_string(),
            },
        )
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes()
}

/// The regions AWS enables in every account: "Regions launched before
/// March 20, 2019 are enabled by default"; later ones are opt-in (AWS
/// Account Management Reference, "Enable or disable AWS Regions in your
/// account"). moto marks three opt-in regions (af-south-1, ap-southeast-3,
/// eu-south-1) as enabled.
const DEFAULT_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "sa-east-1",
];

/// A `DescribeRegions` answer as AWS gives it to an account: moto lists
/// every region it knows, opt-in regions and the GovCloud and China
/// partitions among them, where AWS describes "the Regions that are enabled
/// for your account" unless `AllRegions` is set (EC2 API reference,
/// DescribeRegions), which breakglass never sets: the default regions and
/// any the account opted into. So `regions: all` means in a tabletop what
/// it means in AWS.
fn enabled_regions_only(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(start) = rest.find("<item>") {
        let Some(len) = rest[start..].find("</item>") else {
            break;
        };
        let end = start + len + "</item>".len();
        let item = &rest[start..end];
        let default = DEFAULT_REGIONS
            .iter()
            .any(|r| item.contains(&format!("<regionName>{r}</regionName>")));
        out.push_str(&rest[..start]);
        if default || item.contains("<optInStatus>opted-in</optInStatus>") {
            out.push_str(item);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// The proxy's port, and the accounts it treats as having lost their
/// member role; it lives as long as the process.
pub fn start(upstream: u16) -> Result<(u16, Roleless, Roots), Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Emulator(format!("snapshot-lock shim: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Emulator(format!("snapshot-lock shim: {e}")))?
        .port();
    let locks: Locks = Arc::default();
    let unprovisioned: Unprovisioned = Arc::default();
    let blocks: Blocks = Arc::default();
    let sse_c: SseC = Arc::default();
    let roleless: Roleless = Arc::default();
    let roots: Roots = Arc::default();
    let shared = (roleless.clone(), roots.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (locks, blocks, sse_c) = (locks.clone(), blocks.clone(), sse_c.clone());
            let (roleless, unprovisioned) = (roleless.clone(), unprovisioned.clone());
            let roots = roots.clone();
            std::thread::spawn(move || {
                let tables = Tables {
                    locks: &locks,
                    blocks: &blocks,
                    sse_c: &sse_c,
                    roleless: &roleless,
                    unprovisioned: &unprovisioned,
                    roots: &roots,
                };
                let _ = serve(stream, upstream, &tables);
            });
        }
    });
    Ok((port, shared.0, shared.1))
}

/// What the shim keeps, shared by every connection.
struct Tables<'a> {
    locks: &'a Locks,
    blocks: &'a Blocks,
    sse_c: &'a SseC,
    roleless: &'a Roleless,
    unprovisioned: &'a Unprovisioned,
    roots: &'a Roots,
}

fn serve(mut client: TcpStream, upstream: u16, tables: &Tables) -> std::io::Result<()> {
    let Tables {
        locks,
        blocks,
        sse_c,
        roleless,
        unprovisioned,
        roots,
    } = *tables;
    let request = read_request(&mut client)?;
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |i| i + 4);
    let body = String::from_utf8_lossy(&request[split..]);
    let params = form(&body);
    let head = String::from_utf8_lossy(&request[..split]);
    if let Some(target) = json_target(&head)
        && let Some((status, answer)) = permission_sets(&target, &body, unprovisioned)
    {
        return respond(&mut client, status, &answer);
    }
    if let Some((status, body)) = super::roots::answer(&head, &params, roots) {
        return respond(&mut client, status, &body);
    }
    if let Some((status, body)) = block_public_access(&params, &region_of(&head), blocks) {
        return respond(&mut client, status, &body);
    }
    if let Some(body) = sse_c_refusal(&head, sse_c) {
        return respond(&mut client, "403 Forbidden", &body);
    }
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let dry = get("DryRun") == "true";
    let table = |f: &mut dyn FnMut(&mut Table)| {
        if let Ok(mut l) = locks.lock() {
            f(&mut l);
        }
    };
    let role = get("RoleArn");
    let role_account = role.split(':').nth(4).unwrap_or_default();
    match params.get("Action").map(String::as_str) {
        Some("AssumeRole") if roleless.lock().is_ok_and(|r| r.contains(role_account)) => respond(
            &mut client,
            "403 Forbidden",
            &format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: sts:AssumeRole on resource: {role}</Message></Error><RequestId>shim</RequestId></ErrorResponse>"
            ),
        ),
        Some("LockSnapshot" | "UnlockSnapshot") if dry => respond(
            &mut client,
            "412 Precondition Failed",
            "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set.</Message></Error></Errors><RequestID>shim</RequestID></Response>",
        ),
        Some("LockSnapshot") => {
            let (id, mut mode, days) = (get("SnapshotId"), get("LockMode"), get("LockDuration"));
            // A compliance lock with a cool-off reads `compliance-cooloff`
            // until the cool-off ends (EC2 API reference, LockSnapshot).
            if mode == "compliance" && !get("CoolOffPeriod").is_empty() {
                mode = "compliance-cooloff".into();
            }
            // Expires `LockDuration` days from now, as AWS documents it.
            let until = days
                .parse::<i64>()
                .ok()
                .and_then(|d| {
                    jiff::Timestamp::now()
                        .checked_add(jiff::SignedDuration::from_hours(d * 24))
                        .ok()
                })
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string())
                .unwrap_or_default();
            table(&mut |l| {
                l.insert(id.clone(), (mode.clone(), days.clone(), until.clone()));
            });
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<LockSnapshotResponse xmlns=\"{NS}\"><requestId>shim</requestId><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration></LockSnapshotResponse>"
                ),
            )
        }
        Some("UnlockSnapshot") => {
            let id = get("SnapshotId");
            table(&mut |l| {
                l.remove(&id);
            });
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<UnlockSnapshotResponse xmlns=\"{NS}\"><requestId>shim</requestId><snapshotId>{id}</snapshotId></UnlockSnapshotResponse>"
                ),
            )
        }
        Some("DescribeLockedSnapshots") => {
            let wanted: Vec<&String> = params
                .iter()
                .filter(|(k, _)| k.starts_with("SnapshotId."))
                .map(|(_, v)| v)
                .collect();
            let mut items = String::new();
            table(&mut |l| {
                for (id, (mode, days, until)) in l.iter() {
                    if wanted.is_empty() || wanted.contains(&id) {
                        items.push_str(&format!(
                            "<item><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration><lockExpiresOn>{until}</lockExpiresOn></item>"
                        ));
                    }
                }
            });
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<DescribeLockedSnapshotsResponse xmlns=\"{NS}\"><requestId>shim</requestId><snapshotSet>{items}</snapshotSet></DescribeLockedSnapshotsResponse>"
                ),
            )
        }
        Some("DeleteSnapshot")
            if locks
                .lock()
                .is_ok_and(|l| l.contains_key(&get("SnapshotId"))) =>
        {
            respond(
                &mut client,
                "400 Bad Request",
                &format!(
                    "<Response><Errors><Error><Code>OperationNotPermitted</Code><Message>The snapshot '{}' is locked and cannot be deleted.</Message></Error></Errors><RequestID>shim</RequestID></Response>",
                    get("SnapshotId")
                ),
            )
        }
        _ => {
            note_sse_c(&head, &String::from_utf8_lossy(&request[split..]), sse_c);
            let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
            up.write_all(&request)?;
            let mut response = Vec::new();
            up.read_to_end(&mut response)?;
            client.write_all(&patch_answer(&head, response, sse_c))
        }
    }
}

/// The region a SigV4-signed request names in its credential scope
/// (`Credential=AKID/20261202/us-east-1/ec2/aws4_request`).
/// The operation a JSON-protocol request names in its `X-Amz-Target`.
pub fn json_target(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("x-amz-target").then(|| {
            value
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
    })
}

/// Keeps track of which permission sets changed since they were
/// provisioned, and answers `ListAccountsForProvisionedPermissionSet` by
/// `ProvisioningStatus` as AWS does (see [`Unprovisioned`]). `None`: the
/// request goes to moto.
pub fn permission_sets(
    target: &str,
    body: &str,
    unprovisioned: &Unprovisioned,
) -> Option<(&'static str, String)> {
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    if target == "DescribePermissionSetProvisioningStatus" {
        // Every provisioning moto made has succeeded by now.
        let id = json.get("ProvisionPermissionSetRequestId")?.as_str()?;
        let answer = serde_json::json!({
            "PermissionSetProvisioningStatus": { "RequestId": id, "Status": "SUCCEEDED" }
        });
        return Some(("200 OK", answer.to_string()));
    }
    let ps = json.get("PermissionSetArn")?.as_str()?.to_string();
    let mut changed = unprovisioned.lock().ok()?;
    match target {
        "PutInlinePolicyToPermissionSet"
        | "DeleteInlinePolicyFromPermissionSet"
        | "AttachManagedPolicyToPermissionSet"
        | "DetachManagedPolicyFromPermissionSet"
        | "AttachCustomerManagedPolicyReferenceToPermissionSet"
        | "DetachCustomerManagedPolicyReferenceFromPermissionSet"
        | "PutPermissionsBoundaryToPermissionSet"
        | "DeletePermissionsBoundaryFromPermissionSet"
        | "UpdatePermissionSet" => {
            changed.insert(ps);
            None
        }
        // Only a provisioning to every account brings them all up to date.
        "ProvisionPermissionSet"
            if json.get("TargetType").and_then(|t| t.as_str())
                == Some("ALL_PROVISIONED_ACCOUNTS") =>
        {
            changed.remove(&ps);
            None
        }
        "ListAccountsForProvisionedPermissionSet" => {
            let wanted = json.get("ProvisioningStatus")?.as_str()?;
            let stale = changed.contains(&ps);
            let empty = match wanted {
                "LATEST_PERMISSION_SET_NOT_PROVISIONED" => !stale,
                "LATEST_PERMISSION_SET_PROVISIONED" => stale,
                _ => false,
            };
            // Otherwise moto's list (every account it provisioned) is right.
            empty.then(|| ("200 OK", r#"{"AccountIds":[]}"#.to_string()))
        }
        _ => None,
    }
}

pub fn region_of(head: &str) -> String {
    head.split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or_default()
        .to_string()
}

/// Answers the EC2 block public access calls for snapshots and AMIs, which
/// moto 5 does not implement, as the EC2 API reference documents them: a
/// region starts `unblocked` and managed by the account; `Enable…` sets the
/// state given (AMIs have only `block-new-sharing`), `Disable…` sets
/// `unblocked`, every one takes `DryRun`, and a setting managed by a
/// declarative policy refuses changes. `None` for any other call.
pub fn block_public_access(
    params: &BTreeMap<String, String>,
    region: &str,
    blocks: &Blocks,
) -> Option<(&'static str, String)> {
    let action = params.get("Action")?.as_str();
    let (verb, what) = ["Get", "Enable", "Disable"].iter().find_map(|verb| {
        let rest = action.strip_prefix(verb)?;
        let what = rest
            .strip_suffix("BlockPublicAccessState")
            .or_else(|| rest.strip_suffix("BlockPublicAccess"))?;
        matches!(what, "Snapshot" | "Image").then_some((*verb, what))
    })?;
    if params.get("DryRun").map(String::as_str) == Some("true") {
        return Some((
            "412 Precondition Failed",
            "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set.</Message></Error></Errors><RequestID>shim</RequestID></Response>".into(),
        ));
    }
    let mut table = blocks.lock().ok()?;
    let key = (region.to_string(), what.to_string());
    let (state, managed) = table
        .get(&key)
        .cloned()
        .unwrap_or_else(|| ("unblocked".into(), "account".into()));
    let wanted = match verb {
        "Get" => None,
        "Disable" => Some("unblocked".to_string()),
        _ if what == "Image" => params.get("ImageBlockPublicAccessState").cloned(),
        _ => params.get("State").cloned(),
    };
    if let Some(wanted) = &wanted {
        if managed == "declarative-policy" {
            return Some((
                "400 Bad Request",
                format!(
                    "<Response><Errors><Error><Code>OperationNotPermitted</Code><Message>{what} block public access is managed by a declarative policy and can't be modified by the account.</Message></Error></Errors><RequestID>shim</RequestID></Response>"
                ),
            ));
        }
        table.insert(key, (wanted.clone(), managed.clone()));
    }
    let state = wanted.unwrap_or(state);
    let field = match what {
        "Image" => format!("<imageBlockPublicAccessState>{state}</imageBlockPublicAccessState>"),
        _ => format!("<state>{state}</state>"),
    };
    let suffix = if verb == "Get" { "State" } else { "" };
    let managed = if verb == "Get" {
        format!("<managedBy>{managed}</managedBy>")
    } else {
        String::new()
    };
    Some((
        "200 OK",
        format!(
            "<{verb}{what}BlockPublicAccess{suffix}Response xmlns=\"{NS}\"><requestId>shim</requestId>{field}{managed}</{verb}{what}BlockPublicAccess{suffix}Response>"
        ),
    ))
}

/// One request: the head, then as many body bytes as Content-Length says.
pub fn read_request(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// `application/x-www-form-urlencoded`, as the EC2 query protocol sends it.
pub fn form(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

/// Percent-decoding, `+` as space.
pub fn decode(s: &str) -> String {
    crate::aws::percent_decode(s, true)
}

fn respond(s: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::enabled_regions_only;

    #[test]
    fn describe_regions_lists_only_the_accounts_enabled_regions() {
        let item = |name: &str, status: &str| {
            format!(
                "<item><regionName>{name}</regionName><optInStatus>{status}</optInStatus></item>"
            )
        };
        let body = format!(
            "<DescribeRegionsResponse><regionInfo>{}{}{}{}</regionInfo></DescribeRegionsResponse>",
            item("eu-west-1", "opt-in-not-required"),
            item("af-south-1", "opt-in-not-required"),
            item("us-gov-west-1", "opt-in-not-required"),
            item("me-south-1", "opted-in"),
        );
        let kept = enabled_regions_only(&body);
        assert!(kept.contains("eu-west-1") && kept.contains("me-south-1"));
        assert!(!kept.contains("af-south-1") && !kept.contains("us-gov-west-1"));
        assert!(kept.ends_with("</regionInfo></DescribeRegionsResponse>"));
    }
}
