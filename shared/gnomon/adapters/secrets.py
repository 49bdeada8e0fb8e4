"""Secrets Manager reads (page-token key, header secrets)."""

from __future__ import annotations

import boto3


def secret_string(arn: str) -> str:
    """The SecretString of a secret."""
    return str(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"])
