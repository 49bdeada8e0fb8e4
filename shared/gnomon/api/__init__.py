"""The management HTTP API (Powertools APIGatewayHttpResolver)."""
