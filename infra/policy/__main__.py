"""The policy pack: `pulumi preview --policy-pack infra/policy` (all rules mandatory)."""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import policies

PolicyPack(name="cutover", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
