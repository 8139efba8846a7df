//! A loopback proxy in front of moto that answers what moto 5.2 does not
//! implement (EC2 `LockSnapshot`, `DescribeLockedSnapshots`) and injects
//! chosen faults; every other request is forwarded to moto unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// Snapshot id → (lock mode, duration in days).
pub type Locks = Arc<Mutex<BTreeMap<String, (String, u32)>>>;

#[derive(Clone, Default)]
struct State {
    locks: Locks,
    failing: Arc<Mutex<BTreeSet<String>>>,
    denied: Arc<Mutex<BTreeSet<String>>>,
    mutations: Arc<Mutex<Vec<String>>>,
    denied_dry_runs: Arc<Mutex<BTreeSet<String>>>,
}

/// Read-only API calls by name prefix; everything else counts as a mutation.
const READ_PREFIXES: &[&str] = &["Describe", "List", "Get", "Simulate"];

pub struct Proxy {
    pub port: u16,
    pub locks: Locks,
    /// Instances whose `CreateSnapshots` fails with `IncorrectState`.
    pub failing_snapshots: Arc<Mutex<BTreeSet<String>>>,
    /// Actions `SimulatePrincipalPolicy` answers `implicitDeny` for.
    pub denied_actions: Arc<Mutex<BTreeSet<String>>>,
    /// Every mutating call forwarded or answered, by action name.
    pub mutations: Arc<Mutex<Vec<String>>>,
    /// EC2 actions whose `DryRun=true` answers `UnauthorizedOperation`.
    pub denied_dry_runs: Arc<Mutex<BTreeSet<String>>>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let state = State::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(stream, upstream, &state);
                });
            }
        });
        Proxy {
            port,
            locks: state.locks,
            failing_snapshots: state.failing,
            denied_actions: state.denied,
            mutations: state.mutations,
            denied_dry_runs: state.denied_dry_runs,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

fn read_request(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

fn params(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(x) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn respond(s: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

fn handle(mut client: TcpStream, upstream: u16, state: &State) -> std::io::Result<()> {
    let (locks, failing) = (&state.locks, &state.failing);
    let request = read_request(&mut client)?;
    let split = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(request.len());
    let body = String::from_utf8_lossy(&request[split..]).into_owned();
    let p = params(&body);
    if std::env::var_os("PROXY_DEBUG").is_some() {
        eprintln!("proxy: {body}");
    }
    let get = |k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let action = get("Action").or_else(|| {
        // JSON protocols (Organizations, STS JSON) name the call in a header.
        let head = String::from_utf8_lossy(&request[..split]).to_string();
        head.lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .starts_with("x-amz-target:")
                    .then(|| l.rsplit('.').next().map(|a| a.trim().to_string()))
            })
            .flatten()
    });
    if let Some(a) = &action {
        let dry = get("DryRun").as_deref() == Some("true");
        if !dry
            && !READ_PREFIXES.iter().any(|r| a.starts_with(r))
            && let Ok(mut m) = state.mutations.lock()
        {
            m.push(a.clone());
        }
    }
    let dry_denied = get("DryRun").as_deref() == Some("true")
        && action.as_ref().is_some_and(|a| {
            state
                .denied_dry_runs
                .lock()
                .map(|d| d.contains(a))
                .unwrap_or(false)
        });
    if dry_denied {
        return respond(
            &mut client,
            "403 Forbidden",
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
        );
    }
    match action.as_deref() {
        Some("SimulatePrincipalPolicy") => {
            let action_name = get("ActionNames.member.1").unwrap_or_default();
            let resource = get("ResourceArns.member.1").unwrap_or_else(|| "*".into());
            let denied = state
                .denied
                .lock()
                .map(|d| d.contains(&action_name))
                .unwrap_or(false);
            let decision = if denied { "implicitDeny" } else { "allowed" };
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<SimulatePrincipalPolicyResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><SimulatePrincipalPolicyResult><IsTruncated>false</IsTruncated><EvaluationResults><member><EvalActionName>{action_name}</EvalActionName><EvalResourceName>{resource}</EvalResourceName><EvalDecision>{decision}</EvalDecision><MatchedStatements/><MissingContextValues/></member></EvaluationResults></SimulatePrincipalPolicyResult><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata></SimulatePrincipalPolicyResponse>"
                ),
            )
        }
        Some("LockSnapshot") => {
            let id = get("SnapshotId").unwrap_or_default();
            let mode = get("LockMode").unwrap_or_default();
            let days: u32 = get("LockDuration")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            if get("DryRun").as_deref() == Some("true") {
                return respond(
                    &mut client,
                    "412 Precondition Failed",
                    "<Response><Errors><Error><Code>DryRunOperation</Code><Message>Request would have succeeded, but DryRun flag is set.</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
                );
            }
            if let Ok(mut l) = locks.lock() {
                l.insert(id.clone(), (mode.clone(), days));
            }
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<LockSnapshotResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration></LockSnapshotResponse>"
                ),
            )
        }
        Some("UnlockSnapshot") => {
            let id = get("SnapshotId").unwrap_or_default();
            if let Ok(mut l) = locks.lock() {
                l.remove(&id);
            }
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<UnlockSnapshotResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotId>{id}</snapshotId></UnlockSnapshotResponse>"
                ),
            )
        }
        Some("DescribeLockedSnapshots") => {
            let wanted: Vec<String> = p
                .iter()
                .filter(|(k, _)| k.starts_with("SnapshotId."))
                .map(|(_, v)| v.clone())
                .collect();
            let items: String = locks
                .lock()
                .map(|l| {
                    l.iter()
                        .filter(|(id, _)| wanted.is_empty() || wanted.contains(id))
                        .map(|(id, (mode, days))| {
                            format!("<item><ownerId>123456789012</ownerId><snapshotId>{id}</snapshotId><lockState>{mode}</lockState><lockDuration>{days}</lockDuration></item>")
                        })
                        .collect()
                })
                .unwrap_or_default();
            respond(
                &mut client,
                "200 OK",
                &format!(
                    "<DescribeLockedSnapshotsResponse xmlns=\"{NS}\"><requestId>proxy</requestId><snapshotSet>{items}</snapshotSet></DescribeLockedSnapshotsResponse>"
                ),
            )
        }
        Some("CreateSnapshots")
            if get("DryRun").as_deref() != Some("true")
                && get("InstanceSpecification.InstanceId")
                    .is_some_and(|i| failing.lock().map(|f| f.contains(&i)).unwrap_or(false)) =>
        {
            respond(
                &mut client,
                "400 Bad Request",
                "<Response><Errors><Error><Code>IncorrectState</Code><Message>injected: the volume is busy</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
            )
        }
        _ => {
            let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
            up.write_all(&request)?;
            let mut response = Vec::new();
            up.read_to_end(&mut response)?;
            client.write_all(&response)
        }
    }
}
