"""gnomon — a serverless job scheduler on DynamoDB, SQS and Lambda."""

__version__ = "0.1.0"
