//! The S3 copy of a log, read back: the bucket's region, and a record-by-
//! record comparison with the local file.

use std::collections::BTreeMap;
use std::path::Path;

use super::Verification;
use super::log::object_key;
use crate::Error;
use crate::actions::s3;
use crate::aws::Clients;

/// An S3 client in the bucket's own region, owned by `owner`.
pub async fn bucket_client(
    clients: &Clients,
    region: &str,
    bucket: &str,
    owner: &str,
) -> Result<aws_sdk_s3::Client, Error> {
    Ok(s3::bucket_client(clients, region, bucket, owner).await?)
}

/// Every difference between the local log and its mirror: records missing
/// from the bucket, records that differ, and objects the log does not have.
pub async fn compare_mirror(
    clients: &Clients,
    region: &str,
    path: &Path,
    v: &Verification,
    bucket: &str,
    prefix: &str,
    owner: &str,
) -> Result<Vec<String>, Error> {
    let run_id = v.run_id.clone().unwrap_or_default();
    let local = std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let lines: Vec<&[u8]> = local.split_inclusive(|b| *b == b'\n').collect();
    let client = bucket_client(clients, region, bucket, owner).await?;
    let mut remote: BTreeMap<String, ()> =
        s3::keys_under(&client, bucket, &format!("{prefix}{run_id}/"), owner)
            .await?
            .into_iter()
            .map(|k| (k, ()))
            .collect();
    let mut out = Vec::new();
    for (seq, line) in lines.iter().enumerate() {
        let key = object_key(prefix, &run_id, seq as u64);
        if remote.remove(&key).is_none() {
            out.push(format!("record {seq} is missing from the mirror ({key})"));
            continue;
        }
        let body = s3::object_bytes(&client, bucket, &key, owner).await?;
        if body.as_slice() != *line {
            out.push(format!(
                "record {seq} differs between the log and the mirror ({key})"
            ));
        }
    }
    for extra in remote.keys() {
        out.push(format!("{extra} is in the mirror but not in the log"));
    }
    Ok(out)
}
