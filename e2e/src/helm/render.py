# Renders or lints a chart with Helm v4's engine (helm-python-sdk), offline.
# stdin: one JSON request; stdout: {"ok": result} or {"refused": message} when Helm says no.
import json
import re
import sys

import helm_python as helm
from helm_python import _native

# Helm's own split of a template's output into documents (releaseutil.SplitManifests).
SEPARATOR = re.compile(r"(?:^|\s*\n)---\s*")


def documents(text):
    """The YAML documents of a rendered template, each as JSON, skipping empty ones."""
    for piece in SEPARATOR.split(text):
        content = [line for line in piece.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if content:
            document = helm.values_from_yaml(piece)
            if document:
                yield document


def render(request):
    options = {"name": request["release"], "namespace": request["namespace"], "is_install": True}
    capabilities = request.get("capabilities")
    if capabilities:
        # Chart.render has no parameters for them, but the library reads them from its options.
        options["kube_version"] = capabilities["kube_version"]
        options["api_versions"] = capabilities["api_versions"]
    with helm.Chart.load(request["chart"]) as chart:
        rendered = json.loads(
            _native.call_string("helm_render", chart._raw(), json.dumps(request["values"]), json.dumps(options))
        )
        notes, objects = "", []
        for template, text in sorted(rendered.items()):
            if template.endswith("/NOTES.txt"):
                notes = text
                continue
            objects.extend({"template": template, "object": document} for document in documents(text))
        crds = [document for crd in chart.crds for document in documents(crd["data"])]
    return {"objects": objects, "crds": crds, "notes": notes}


def lint(request):
    return helm.lint(request["chart"], request["values"], strict=True, kube_version=request.get("kube_version"))


def versions(_request):
    return {"sdk": helm.__version__, "helm": helm.helm_sdk_version()}


request = json.load(sys.stdin)
try:
    answer = {"ok": {"render": render, "lint": lint, "versions": versions}[request["op"]](request)}
except helm.HelmError as error:
    answer = {"refused": str(error).strip()}
json.dump(answer, sys.stdout)
