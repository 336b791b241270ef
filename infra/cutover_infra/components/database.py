"""RDS PostgreSQL: private, encrypted, SSL-only, backed up, its master password managed
(and rotated) by AWS. The services in `provisioned` mode log in as their own user with IAM
tokens; only their migration Jobs use the master secret, read at run time
(values.DatabaseLogin). `cutover:database.name` names the database, its master user and the
instance (`cutover-<env>-<name>`): changing it would replace the instance."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.config import DatabaseConfig
from cutover_infra.values import resource_name, tags


@dataclass
class DatabaseArgs:
    environment: str
    config: DatabaseConfig
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Input[str]]
    client_security_group_id: pulumi.Input[str]  # the cluster's nodes/pods
    protect: bool


class Database(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:database:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base_tags = tags(args.environment)
        subnets = aws.rds.SubnetGroup(
            f"{name}-subnets", subnet_ids=args.private_subnet_ids, tags=base_tags, opts=child
        )
        major = args.config.engine_version.split(".")[0]
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            parameters=[
                aws.rds.ParameterGroupParameterArgs(name="rds.force_ssl", value="1"),
                aws.rds.ParameterGroupParameterArgs(name="log_min_duration_statement", value="500"),
            ],
            tags=base_tags,
            opts=child,
        )
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            description="Postgres from the cluster's nodes and pods only",
            vpc_id=args.vpc_id,
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    description="Postgres from the cluster",
                    protocol="tcp",
                    from_port=5432,
                    to_port=5432,
                    security_groups=[args.client_security_group_id],
                )
            ],
            tags=base_tags,
            opts=child,
        )
        self.instance = aws.rds.Instance(
            f"{name}-postgres",
            identifier=resource_name(args.environment, args.config.name),
            engine="postgres",
            engine_version=args.config.engine_version,
            instance_class=args.config.instance_class,
            allocated_storage=args.config.allocated_storage,
            max_allocated_storage=args.config.max_allocated_storage,
            storage_type="gp3",
            storage_encrypted=True,
            multi_az=args.config.multi_az,
            publicly_accessible=False,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=parameters.name,
            db_name=args.config.name,
            username=args.config.name,
            manage_master_user_password=True,  # the password lives in Secrets Manager, rotated by AWS
            backup_retention_period=args.config.backup_retention_days,
            deletion_protection=args.config.deletion_protection,
            skip_final_snapshot=False,
            final_snapshot_identifier=resource_name(args.environment, f"{args.config.name}-final"),
            copy_tags_to_snapshot=True,
            auto_minor_version_upgrade=True,
            performance_insights_enabled=True,
            iam_database_authentication_enabled=True,
            enabled_cloudwatch_logs_exports=["postgresql"],
            tags=base_tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        # What the colors log in with (values.DatabaseLogin): the master secret for the
        # migration Job, the instance's DbiResourceId for the pods' rds-db:connect. No
        # password is ever read into the program, its state or a Kubernetes Secret.
        self.secret_arn: pulumi.Output[str] = self.instance.master_user_secrets.apply(
            lambda s: (s[0].secret_arn or "") if s else ""
        )
        self.resource_id: pulumi.Output[str] = self.instance.resource_id
        self.register_outputs(
            {"address": self.instance.address, "secretArn": self.secret_arn, "resourceId": self.resource_id}
        )
