"""Model bundles (a `.keras` model plus a JSON sidecar) and the architectures vidbatch trains."""
