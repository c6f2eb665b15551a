#!/usr/bin/env python3
"""Rebuilds gmail.v1.send.json from Google's Gmail discovery document.

The discovery document `gmail.v1.json` ships inside the PyPI package
google-api-python-client (googleapiclient/discovery_cache/documents/gmail.v1.json).
This keeps the one method the contract tests read (`users.messages.send`), the global
parameters it uses, the `Message` schema, and a `source` block naming the package version
and discovery revision. Run it to refresh the file:

    pip download --no-deps -d /tmp/gapi google-api-python-client==2.202.0
    unzip -o -d /tmp/gapi /tmp/gapi/google_api_python_client-2.202.0-py3-none-any.whl \
        googleapiclient/discovery_cache/documents/gmail.v1.json
    python3 extract.py /tmp/gapi/googleapiclient/discovery_cache/documents/gmail.v1.json \
        2.202.0 > gmail.v1.send.json
"""

import json
import sys

GLOBAL_PARAMETERS = ["uploadType", "upload_protocol", "alt", "access_token", "fields", "prettyPrint"]


def main() -> None:
    path, version = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as file:
        document = json.load(file)
    method = document["resources"]["users"]["resources"]["messages"]["methods"]["send"]
    out = {
        "source": {
            "package": "google-api-python-client",
            "package_version": version,
            "file": "googleapiclient/discovery_cache/documents/gmail.v1.json (inside the PyPI package)",
            "discovery_revision": document["revision"],
            "discovery_id": document["id"],
        },
        "rootUrl": document["rootUrl"],
        "servicePath": document["servicePath"],
        "mtlsRootUrl": document["mtlsRootUrl"],
        "method_id": method["id"],
    }
    for key in ["httpMethod", "path", "flatPath", "parameterOrder", "parameters",
                "supportsMediaUpload", "mediaUpload", "request", "response", "scopes"]:
        out[key] = method[key]
    out["global_parameters"] = {name: document["parameters"][name] for name in GLOBAL_PARAMETERS}
    out["schemas"] = {"Message": document["schemas"]["Message"]}
    out["description"] = method["description"]
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
