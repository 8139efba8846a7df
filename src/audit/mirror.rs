//! The S3 copy of a log, read back: the bucket's region, and a record-by-
//! record comparison with the local file.

use std::collections::BTreeMap;
use std::path::Path;

use super::Verification;
use super::log::object_key;
use crate::Error;
use crate::aws::{Clients, aws_error};

/// An S3 client in the bucket's own region, after checking that the bucket
/// belongs to `owner` (`ExpectedBucketOwner`: a bucket of that name in
/// another account answers 403).
pub async fn bucket_client(
    clients: &Clients,
    region: &str,
    bucket: &str,
    owner: &str,
) -> Result<aws_sdk_s3::Client, Error> {
    let located = clients
        .s3(region)
        .get_bucket_location()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
        .map_err(|e| Error::Aws(aws_error("s3:GetBucketLocation", e)))?;
    // An empty constraint is us-east-1, as S3 documents it.
    let region = located
        .location_constraint()
        .map(|c| c.as_str().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string());
    Ok(clients.s3(&region))
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
    let s3 = bucket_client(clients, region, bucket, owner).await?;
    let pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(format!("{prefix}{run_id}/"))
        .expected_bucket_owner(owner)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::Aws(aws_error("s3:ListObjectsV2", e)))?;
    let listed: Vec<&aws_sdk_s3::types::Object> = pages.iter().flat_map(|p| p.contents()).collect();
    let mut remote: BTreeMap<String, ()> = listed
        .iter()
        .filter_map(|o| o.key().map(|k| (k.to_string(), ())))
        .collect();
    let mut out = Vec::new();
    for (seq, line) in lines.iter().enumerate() {
        let key = object_key(prefix, &run_id, seq as u64);
        if remote.remove(&key).is_none() {
            out.push(format!("record {seq} is missing from the mirror ({key})"));
            continue;
        }
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .expected_bucket_owner(owner)
            .send()
            .await
            .map_err(|e| Error::Aws(aws_error("s3:GetObject", e)))?;
        let body = got
            .body
            .collect()
            .await
            .map_err(|e| Error::Aws(crate::aws::local("s3:GetObject", e.to_string())))?
            .into_bytes();
        if body.as_ref() != *line {
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
