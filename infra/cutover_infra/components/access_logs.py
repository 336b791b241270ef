"""The S3 bucket the ALBs write their access logs to, one per stack: every public access
blocked, objects owned by the bucket owner (ACLs off), SSE-S3 (the only encryption ALB log
delivery supports), TLS-only, logs expired after cutover:loadBalancer.accessLogRetentionDays,
and a bucket policy that lets Elastic Load Balancing write under <prefix>/AWSLogs/<account>/
only, one prefix per ALB (its color). The bucket goes with the stack, logs included, only
while cutover:teardown is set."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from cutover_infra.values import resource_name, tags

# Regions that opened before August 2022: there ELB delivers access logs from a regional AWS
# account (aws.elb.get_service_account gives it). Regions opened since take the service
# principal instead (ALB user guide, "Enable access logs", step 2).
ELB_ACCOUNT_REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
        "ap-south-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-southeast-1",
        "ap-southeast-2", "ap-southeast-3", "ca-central-1", "eu-central-1", "eu-west-1",
        "eu-west-2", "eu-west-3", "eu-south-1", "eu-north-1", "me-south-1", "sa-east-1",
        "us-gov-west-1", "us-gov-east-1", "cn-north-1", "cn-northwest-1",
    }
)  # fmt: skip
LOG_DELIVERY_SERVICE = "logdelivery.elasticloadbalancing.amazonaws.com"
SSE_S3 = "AES256"  # ALB access logs support SSE-S3 only (not SSE-KMS)


def uses_elb_account(region: str) -> bool:
    """Whether log delivery in `region` comes from the regional ELB account (older regions)
    rather than the logdelivery.elasticloadbalancing service principal (newer ones)."""
    return region in ELB_ACCOUNT_REGIONS


def log_delivery_principal(region: str, elb_account_arn: str | None = None) -> dict[str, str]:
    """The bucket policy principal that ELB log delivery in `region` writes as."""
    if not uses_elb_account(region):
        return {"Service": LOG_DELIVERY_SERVICE}
    if not elb_account_arn:
        raise ValueError(
            f"{region} delivers ALB access logs from the regional ELB account: its ARN is needed"
        )
    return {"AWS": elb_account_arn}


def access_logs_policy(
    bucket_arn: str, prefixes: Sequence[str], account_id: str, principal: Mapping[str, str]
) -> dict[str, Any]:
    """The bucket policy: ELB log delivery may put objects under each prefix's
    AWSLogs/<account_id>/ (nothing else), and every request without TLS is denied."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ElbAccessLogDelivery",
                "Effect": "Allow",
                "Principal": dict(principal),
                "Action": "s3:PutObject",
                "Resource": [f"{bucket_arn}/{prefix}/AWSLogs/{account_id}/*" for prefix in prefixes],
            },
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            },
        ],
    }


@dataclass
class AccessLogsArgs:
    environment: str
    region: str
    prefixes: Sequence[str]  # one per load balancer (its color); nothing else may be written
    retention_days: int  # cutover:loadBalancer.accessLogRetentionDays
    protect: bool  # cutover:protect
    teardown: bool  # cutover:teardown: the bucket is deleted with its logs


class AccessLogs(pulumi.ComponentResource):
    def __init__(self, name: str, args: AccessLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:traffic:AccessLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.prefixes = tuple(args.prefixes)
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            # S3 names are global: the provider appends a unique suffix to the prefix.
            bucket_prefix=f"{resource_name(args.environment, 'alb-logs')}-",
            force_destroy=args.teardown,
            tags=tags(args.environment),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.name = self.bucket.bucket
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.name,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.name,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.name,
            rules=[
                aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                    apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                        sse_algorithm=SSE_S3
                    )
                )
            ],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.name,
            rules=[
                aws.s3.BucketLifecycleConfigurationRuleArgs(
                    id="expire-access-logs",
                    status="Enabled",
                    filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(),  # empty: every object
                    expiration=aws.s3.BucketLifecycleConfigurationRuleExpirationArgs(
                        days=args.retention_days
                    ),
                    abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                        days_after_initiation=7
                    ),
                )
            ],
            opts=child,
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.name,
            policy=self._policy_document(args),
            # S3 refuses concurrent changes to one bucket's settings (OperationAborted).
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_access, ownership]),
        )
        self.register_outputs({"bucket": self.name, "bucketArn": self.bucket.arn})

    def _policy_document(self, args: AccessLogsArgs) -> pulumi.Output[str]:
        account_id = aws.get_caller_identity_output().account_id
        elb_account: pulumi.Input[str | None] = (
            aws.elb.get_service_account_output(region=args.region).arn
            if uses_elb_account(args.region)
            else None
        )
        return pulumi.Output.all(self.bucket.arn, account_id, elb_account).apply(
            lambda v: json.dumps(
                access_logs_policy(v[0], self.prefixes, v[1], log_delivery_principal(args.region, v[2]))
            )
        )

    def for_load_balancer(self, prefix: str) -> aws.lb.LoadBalancerAccessLogsArgs:
        """An ALB's `access_logs`: this bucket, under `prefix` (one the bucket policy allows).
        The ALB must depend on `self.policy`: AWS checks write access when logging is enabled."""
        if prefix not in self.prefixes:
            raise ValueError(f"access log prefix {prefix!r} is not one of {self.prefixes}")
        return aws.lb.LoadBalancerAccessLogsArgs(bucket=self.name, prefix=prefix, enabled=True)
