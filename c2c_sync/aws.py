"""Where AWS calls go: region and endpoint chosen once per command, clients built from one session.

`--endpoint-url` (or AWS_ENDPOINT_URL) points every client at moto's server in the tests or at
LocalStack; in production it is unset and boto3 resolves the real endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import NoCredentialsError, NoRegionError

# An operator waits for a CLI: fail after a few attempts rather than retry for minutes.
_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20)


@dataclass
class AwsTarget:
    region: str | None = None
    endpoint_url: str | None = None
    _session: boto3.Session | None = field(default=None, init=False, repr=False)

    @property
    def session(self) -> boto3.Session:
        if self._session is None:
            self._session = boto3.Session(region_name=self.region)
        return self._session

    @property
    def region_name(self) -> str:
        region = self.session.region_name
        if not region:
            raise NoRegionError()
        return region

    def client(self, service: str) -> Any:
        """A client of `service` (named at run time, so untyped: callers know which API they call)."""
        return self.session.client(  # type: ignore[call-overload]  # the stubs type literal names only
            service, region_name=self.region_name, endpoint_url=self.endpoint_url, config=_CLIENT_CONFIG
        )

    def credentials(self) -> ReadOnlyCredentials:
        """Frozen credentials for signing a request by hand (the function URL call)."""
        credentials = self.session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        return credentials.get_frozen_credentials()
