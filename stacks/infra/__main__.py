"""Pulumi entry point of the infra stack: read config, build the components, export."""

import pulumi

from stacks.infra import config, program, tokens

try:
    cfg = config.from_pulumi(pulumi.get_stack())
    provider_tokens = tokens.load(cfg)
except (config.InfraConfigError, tokens.TokenError) as exc:
    # RunError prints the one-sentence message without a Python traceback.
    raise pulumi.RunError(str(exc)) from None

for key, value in program.build(cfg, provider_tokens).items():
    pulumi.export(key, value)
