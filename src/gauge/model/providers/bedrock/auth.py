"""AWS credentials and SigV4 signing for Bedrock, through botocore.

botocore carries the weight here: the whole credential chain (env vars, shared
credentials and config files, profiles, SSO, credential_process, container and
instance roles) and SigV4 itself. Resolving credentials may touch disk or the
network, so it runs in a thread, once, and again only when refreshable
credentials are about to expire. Signing is pure CPU (~60 us) and runs inline.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import TYPE_CHECKING

from gauge.errors import ConfigError, MissingAPIKey, one_line
from gauge.model.providers._proxy import DIRECT

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials
    from botocore.session import Session

SERVICE = "bedrock"
CREDENTIAL_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
    "keys), AWS_PROFILE / -M profile=NAME for a profile in ~/.aws/credentials or ~/.aws/config, "
    "or AWS_BEARER_TOKEN_BEDROCK for a Bedrock API key"
)


class MissingAWSCredentials(MissingAPIKey):
    """No AWS credentials could be found or loaded for Bedrock."""


class AwsAuth:
    """Resolves one profile's credentials and signs requests for one region."""

    def __init__(
        self, profile: str | None = None, region: str | None = None, proxy: str | None = None
    ) -> None:
        self.profile = profile
        self._session = _session(profile)
        if proxy is not None and proxy.strip().lower() not in DIRECT:
            # botocore reads HTTP(S)_PROXY / NO_PROXY itself; `-M proxy=` reaches the
            # clients it makes to fetch credentials (STS, SSO) through their config.
            from botocore.config import Config

            self._session.set_default_client_config(Config(proxies={"http": proxy, "https": proxy}))
        self.region = region or _region(self._session)
        self._credentials: Credentials | None = None
        self._frozen: ReadOnlyCredentials | None = None
        self._lock = threading.Lock()

    async def credentials(self) -> ReadOnlyCredentials:
        """Current credentials; resolved off the event loop when missing or expiring."""
        frozen = self._frozen
        if frozen is not None and not self._expiring():
            return frozen
        return await asyncio.to_thread(self._resolve)

    def sign(
        self, credentials: ReadOnlyCredentials, url: str, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        """`headers` plus the SigV4 ones (X-Amz-Date, Authorization, ...) for POSTing `body`."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(
            method="POST",
            url=url,
            data=body,
            headers=headers,
        )
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        return dict(request.headers.items())

    def _expiring(self) -> bool:
        refresh_needed = getattr(self._credentials, "refresh_needed", None)
        return bool(refresh_needed and refresh_needed())

    def _resolve(self) -> ReadOnlyCredentials:
        # Concurrent first requests wait here for one resolution instead of racing.
        with self._lock:
            if self._frozen is not None and not self._expiring():
                return self._frozen
            from botocore.exceptions import BotoCoreError

            try:
                if self._credentials is None:
                    self._credentials = self._session.get_credentials()
                if self._credentials is None:
                    raise MissingAWSCredentials(
                        f"bedrock found no AWS credentials: {CREDENTIAL_HELP}"
                    )
                frozen = self._credentials.get_frozen_credentials()
            except BotoCoreError as ex:
                raise MissingAWSCredentials(
                    f"bedrock could not load AWS credentials ({one_line(ex)}): {CREDENTIAL_HELP}"
                ) from None
            if not frozen.access_key or not frozen.secret_key:
                raise MissingAWSCredentials(
                    f"bedrock found incomplete AWS credentials: {CREDENTIAL_HELP}"
                )
            self._frozen = frozen
            return frozen


def _session(profile: str | None) -> Session:
    import botocore.session
    from botocore.exceptions import BotoCoreError, ProfileNotFound

    session = botocore.session.Session(profile=profile)
    try:
        # Read the profile now so a misspelt one or a broken file fails at get_model.
        session.get_scoped_config()
    except ProfileNotFound as ex:
        raise ConfigError(
            f"AWS profile not found ({one_line(ex)}): add it to ~/.aws/config or "
            "~/.aws/credentials, or set AWS_PROFILE / -M profile= to an existing one"
        ) from None
    except BotoCoreError as ex:
        raise ConfigError(f"cannot read the AWS config: {one_line(ex)}; fix the file") from None
    return session


def _region(session: Session) -> str:
    region = session.get_config_variable("region") or os.environ.get("AWS_REGION")
    if not region:
        raise ConfigError(
            "bedrock needs an AWS region: set AWS_DEFAULT_REGION, add region= to your AWS "
            "profile, or pass -M region=us-east-1"
        )
    return str(region)
