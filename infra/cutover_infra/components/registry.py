"""The ECR repository a service's images are pushed to and pulled from (by digest):
immutable tags, scanned on push, KMS-encrypted, older images expired by a lifecycle policy."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.values import ecr_lifecycle_policy, tags


def repository_name(environment: str, service: str) -> str:
    """`cutover/<env>/<service>`; `environment` is the service's cutover environment's stack
    part: the single-service layout named it after the stack's environment."""
    return f"cutover/{environment}/{service}"


@dataclass
class RegistryArgs:
    environment: str
    service: str
    keep_images: int
    protect: bool
    teardown: bool  # the repository goes with the stack, images included


class Registry(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:registry:Registry", name, None, opts)
        self.repository = aws.ecr.Repository(
            f"{name}-repository",
            name=repository_name(args.environment, args.service),
            # A tag names one build forever: what cutover recorded is what a rollback pulls.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(scan_on_push=True),
            encryption_configurations=[aws.ecr.RepositoryEncryptionConfigurationArgs(encryption_type="KMS")],
            force_delete=args.teardown,
            tags=tags(args.environment),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=self.repository.name,
            policy=ecr_lifecycle_policy(args.keep_images),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.url = self.repository.repository_url
        self.register_outputs({"repositoryUrl": self.url})
