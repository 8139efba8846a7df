//! S3: the account's public access block (`s3.block_public_access`), and
//! the copy of each audit record in the responder's evidence bucket, kept
//! here so every mutating AWS call lives under `actions/`, where a reviewer
//! looks for them.

pub mod block_public_access;
pub mod protect_buckets;

use crate::aws::{self, AwsError};

/// Writes one audit record to `s3://bucket/key`, only if absent
/// (`If-None-Match: *`, so nothing already mirrored is overwritten) and only
/// into a bucket `owner` owns (`ExpectedBucketOwner`: a bucket name an
/// attacker registered elsewhere gets nothing).
pub async fn put_record(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    owner: &str,
    line: String,
) -> Result<(), AwsError> {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .if_none_match("*")
        .content_type("application/json")
        .body(aws_sdk_s3::primitives::ByteStream::from(line.into_bytes()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| aws::aws_error("s3:PutObject", e))
}

/// An S3 client in the bucket's own region, after checking that the bucket
/// belongs to `owner` (`ExpectedBucketOwner`: a bucket of that name in
/// another account answers 403).
pub async fn bucket_client(
    clients: &aws::Clients,
    region: &str,
    bucket: &str,
    owner: &str,
) -> Result<aws_sdk_s3::Client, AwsError> {
    let located = clients
        .s3(region)
        .get_bucket_location()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
        .map_err(|e| aws::aws_error("s3:GetBucketLocation", e))?;
    // An empty constraint is us-east-1, as S3 documents it.
    let region = located
        .location_constraint()
        .map(|c| c.as_str().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "us-east-1".to_string());
    Ok(clients.s3(&region))
}

/// Every object key under `prefix`, all pages.
pub async fn keys_under(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    owner: &str,
) -> Result<Vec<String>, AwsError> {
    let pages = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .expected_bucket_owner(owner)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws::aws_error("s3:ListObjectsV2", e))?;
    Ok(pages
        .iter()
        .flat_map(|p| p.contents())
        .filter_map(|o| o.key().map(str::to_string))
        .collect())
}

/// One object's bytes.
pub async fn object_bytes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    owner: &str,
) -> Result<Vec<u8>, AwsError> {
    let got = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .expected_bucket_owner(owner)
        .send()
        .await
        .map_err(|e| aws::aws_error("s3:GetObject", e))?;
    Ok(got
        .body
        .collect()
        .await
        .map_err(|e| aws::local("s3:GetObject", e.to_string()))?
        .into_bytes()
        .to_vec())
}

/// The bucket keeps every object under a default COMPLIANCE-mode Object
/// Lock retention: nobody, its account's admins included, can delete the
/// copy before it expires. Unreadable counts as no.
pub async fn compliance_locked(s3: &aws_sdk_s3::Client, bucket: &str, owner: &str) -> bool {
    s3.get_object_lock_configuration()
        .bucket(bucket)
        .expected_bucket_owner(owner)
        .send()
        .await
        .ok()
        .and_then(|o| {
            o.object_lock_configuration()
                .and_then(|c| c.rule())
                .and_then(|r| r.default_retention())
                .and_then(|d| d.mode())
                .map(|m| m.as_str() == "COMPLIANCE")
        })
        .unwrap_or(false)
}
