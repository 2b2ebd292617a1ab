# Copyright: cluster.secrets contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A TEST DOUBLE of the Kubernetes API server, with a stand-in for the External Secrets Operator.

This package exists only for the tests. It is never used by the product: the role
talks to real clusters through kubernetes.core and the official ``kubernetes``
Python client. No API server can be installed where the tests run, so this small
emulator speaks enough of the real HTTP API for those same clients:

- discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/<group>/<version>``)
  for the core, rbac, authorization and ``external-secrets.io/v1`` resources;
- create (POST), get and list (GET, with ``labelSelector``), replace (PUT), delete,
  JSON merge patch, strategic merge patch (as a merge patch) and server-side apply
  (``application/apply-patch+yaml``, with the fields a manager stops applying removed);
- ``metadata.uid``, ``resourceVersion``, ``generation`` and ``creationTimestamp``;
  a no-op write keeps the resourceVersion, as the real server does;
- ``stringData`` of Secrets folded into base64 ``data``;
- ``dryRun=All`` computes the answer and changes nothing;
- namespaced objects need their namespace; every new namespace gets the
  ``kube-root-ca.crt`` ConfigMap, as kube-controller-manager publishes it.

:class:`~tests.kube_api_double.eso.EsoReconciler` plays ESO: it validates
ClusterSecretStores (kubernetes provider: service account and RBAC in the remote
namespace; vault provider: a dict standing in for a KV v2 engine), and syncs
ExternalSecrets into their target Secrets, setting ``status.conditions[type=Ready]``
with ESO's reasons (``Valid``, ``InvalidProviderConfig``, ``SecretSynced``,
``SecretSyncedError``).
"""

from tests.kube_api_double.api import KubeApiDouble

__all__ = ["KubeApiDouble"]
