"""Cutover's Pulumi program (`pulumi up`): read config, build the components, export.

Everything else lives in cutover_infra/: config.py (typed, validated stack config),
components/ (one ComponentResource per concern), values.py and budget.py (pure functions).
"""

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).parent))  # cutover_infra, when Pulumi runs this directory

from cutover_infra import config as stack_config
from cutover_infra.program import build

settings = stack_config.load()
kubeconfig = pulumi.Config("cutover").get_secret("kubeconfig") if settings.cluster.existing else None
for name, value in build(settings, kubeconfig).items():
    pulumi.export(name, value)
