"""Moved to `foleyflow.manifest` (a leaf, so that foleyflow.world can use it too). This alias keeps the code of
branches written before the move working; new code imports foleyflow.manifest, and the alias goes once nothing
imports it."""
from foleyflow.manifest import (MANIFEST, PATH_FIELDS, ManifestEntry, ManifestError, manifest_path,  # noqa: F401
                                read_manifest, read_manifest_rows, write_manifest)
