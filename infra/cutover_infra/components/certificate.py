"""One ACM certificate for the service name and the per-color names, validated by DNS."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from cutover_infra.values import tags


@dataclass
class CertificateArgs:
    environment: str
    domain: str
    hosted_zone_id: str


class Certificate(pulumi.ComponentResource):
    def __init__(self, name: str, args: CertificateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cutover:dns:Certificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        names = [args.domain, f"blue.{args.domain}", f"green.{args.domain}"]
        certificate = aws.acm.Certificate(
            f"{name}-cert",
            domain_name=args.domain,
            subject_alternative_names=names[1:],
            validation_method="DNS",
            tags=tags(args.environment),
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )
        records = []
        for index, domain in enumerate(names):
            option = certificate.domain_validation_options.apply(
                lambda options, d=domain: next(o for o in options if o.domain_name == d)  # type: ignore[misc]
            )
            records.append(
                aws.route53.Record(
                    f"{name}-validation-{index}",
                    zone_id=args.hosted_zone_id,
                    name=option.resource_record_name,
                    type=option.resource_record_type,
                    records=[option.resource_record_value],
                    ttl=60,
                    allow_overwrite=True,
                    opts=child,
                )
            )
        validation = aws.acm.CertificateValidation(
            f"{name}-validation",
            certificate_arn=certificate.arn,
            validation_record_fqdns=[r.fqdn for r in records],
            opts=child,
        )
        self.arn = validation.certificate_arn
        self.register_outputs({"arn": self.arn})
