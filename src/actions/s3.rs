//! The one S3 write breakglass makes: a copy of an audit record in the
//! responder's evidence bucket. Kept here so every mutating AWS call lives
//! under `actions/`, where a reviewer looks for them.

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
