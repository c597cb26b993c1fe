"""Who may have what: the checks every ``/v1/tracks/...`` request passes before any cache is
looked at. First the client's region (``edge.access.client_region``), then the signed URL
(``edge.access.signing``, a 403), and, once the manifest is in hand, the licence for that region now
(``edge.access.licensing``, a 451). Nothing here touches the origin or a cache."""

from __future__ import annotations

from dataclasses import dataclass

from edge.access.client_region import RegionResolver
from edge.access.licensing import LicenceGate
from edge.access.signing import SignatureCheck
from edge.http.request import Request
from origin.settings import Settings


@dataclass(frozen=True, slots=True)
class Access:
    regions: RegionResolver
    signatures: SignatureCheck
    licences: LicenceGate

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        edge, auth = settings.edge, settings.auth
        return cls(
            regions=RegionResolver(
                header=edge.client_region_header,
                trusted_proxies=edge.trusted_proxies,
                cidr_regions=edge.client_region_cidrs,
                default=edge.region,
            ),
            signatures=SignatureCheck(auth),
            licences=LicenceGate(
                {edge.region, *edge.client_region_cidrs.values(), *edge.metric_regions}
            ),
        )

    def admit(self, request: Request) -> str:
        """The client's region, once the request's signature (if required) holds."""
        region = self.regions.resolve(request.remote, request.getall(self.regions.header_key))
        if self.signatures.required:
            self.signatures.verify_target(request.path, request.query_string, region)
        return region
