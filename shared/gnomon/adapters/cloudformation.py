"""Read a deployed stack's outputs (the CLI's `--stack NAME` finds the API's URL this way)."""

from __future__ import annotations

from typing import Any

API_URL_OUTPUT = "ApiUrl"


class StackOutputMissing(LookupError):
    """The stack exists but has no such output (yet: e.g. still creating)."""


def stack_outputs(
    stack: str, *, region: str | None = None, profile: str | None = None, client: Any = None
) -> dict[str, str]:
    """Every output of a CloudFormation stack, by key. A missing stack raises botocore's
    `ClientError` (ValidationError) — the caller words it for its user."""
    if client is None:
        import boto3

        client = boto3.Session(profile_name=profile, region_name=region).client("cloudformation")
    stacks = client.describe_stacks(StackName=stack)["Stacks"]
    if not stacks:
        raise StackOutputMissing(f"stack {stack!r} not found")
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs") or []}


def api_url(stack: str, *, region: str | None = None, profile: str | None = None, client: Any = None) -> str:
    """The `ApiUrl` output of a gnomon stack."""
    try:
        outputs = stack_outputs(stack, region=region, profile=profile, client=client)
    except StackOutputMissing:
        raise
    except Exception as exc:  # botocore ClientError / NoCredentialsError / NoRegionError
        raise StackOutputMissing(f"cannot read stack {stack!r}: {exc}") from exc
    if API_URL_OUTPUT not in outputs:
        raise StackOutputMissing(
            f"stack {stack!r} has no {API_URL_OUTPUT} output (outputs: {', '.join(sorted(outputs)) or 'none'})"
        )
    return outputs[API_URL_OUTPUT]
