#!/usr/bin/python3
"""The cluster file (deploy/dev-cluster/cluster.yaml) and what cluster.py generates from it: no
cluster needed. Run: /usr/bin/python3 tests/cluster/cluster_file_test.py"""

import importlib.util
import sys
import os
import tempfile
import textwrap
import unittest

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.dont_write_bytecode = True  # no __pycache__ in scripts/cluster
spec = importlib.util.spec_from_file_location("cluster", os.path.join(REPO, "scripts", "cluster", "cluster.py"))
cluster = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cluster)


def load(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(textwrap.dedent(text))
    try:
        return cluster.load_cluster(f.name)
    finally:
        os.unlink(f.name)


class DefaultCluster(unittest.TestCase):
    def setUp(self):
        self.spec = cluster.load_cluster(cluster.DEFAULT_CLUSTER)
        self.nodes = {n["name"]: n for n in self.spec["nodes"]}

    def test_has_the_five_nodes_on_their_own_addresses(self):
        self.assertEqual([n["name"] for n in self.spec["nodes"]],
                         ["gpu-whole", "gpu-sliced", "gpu-mig", "gpu-shared-0", "gpu-shared-1"])
        self.assertEqual([n["address"] for n in self.spec["nodes"]],
                         ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"])

    def test_gpus_and_modes_are_as_documented(self):
        modes = lambda name: [g["mode"] for g in self.nodes[name]["gpus"]]
        self.assertEqual(modes("gpu-whole"), ["whole"] * 4)
        self.assertEqual(modes("gpu-sliced"), ["time-sliced"] * 4)
        self.assertEqual({g["replicas"] for g in self.nodes["gpu-sliced"]["gpus"]}, {4})
        self.assertEqual(modes("gpu-mig"), ["mig", "mig", "whole", "whole"])
        self.assertEqual(self.nodes["gpu-mig"]["gpus"][0]["mig"], ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"])
        self.assertEqual({g["model"] for g in self.nodes["gpu-mig"]["gpus"]}, {"NVIDIA H100 80GB HBM3"})
        self.assertEqual(modes("gpu-shared-0"), ["shared"] * 8)
        self.assertEqual(modes("gpu-shared-1"), ["shared"] * 8)

    def test_every_gpu_of_the_cluster_has_its_own_uuid(self):
        uuids = [g["uuid"] for n in self.spec["nodes"] for g in n["gpus"]]
        self.assertEqual(len(uuids), len(set(uuids)))
        self.assertEqual(uuids, [g["uuid"] for n in cluster.load_cluster(cluster.DEFAULT_CLUSTER)["nodes"]
                                 for g in n["gpus"]], "UUIDs change between runs")

    def test_device_file_lists_each_gpu_in_index_order(self):
        lines = [l for l in cluster.fakegpu_device_file(self.nodes["gpu-mig"]).splitlines() if not l.startswith("#")]
        self.assertEqual(len(lines), 4)
        self.assertTrue(lines[0].startswith('device name="NVIDIA H100 80GB HBM3" memory=80GiB sms=132 uuid=GPU-'))
        self.assertTrue(lines[0].endswith(" mig=3g.40gb,2g.20gb,1g.10gb,1g.10gb"), lines[0])
        self.assertNotIn("mig=", lines[2])

    def test_node_config_gives_every_gpu_its_mode(self):
        config = yaml.safe_load(cluster.node_config_file(self.nodes["gpu-mig"]))
        self.assertEqual(config, {"gpus": [
            {"index": 0, "mode": "mig", "mig": ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]},
            {"index": 1, "mode": "mig", "mig": ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]},
            {"index": 2, "mode": "whole"}, {"index": 3, "mode": "whole"}]})
        config = yaml.safe_load(cluster.node_config_file(self.nodes["gpu-sliced"]))
        self.assertEqual(config["gpus"][3], {"index": 3, "mode": "time-sliced", "replicas": 4})


class BadClusterFiles(unittest.TestCase):
    def assertRefused(self, text, words):
        with self.assertRaises(cluster.ClusterError) as caught:
            load(text)
        for word in words:
            self.assertIn(word, str(caught.exception))

    def test_unknown_mode(self):
        self.assertRefused("""
            nodes:
              - name: a
                gpus: [{model: X, memory: 1GiB, sms: 1, mode: sliced}]
            """, ["node a", "gpus[0]", "sliced"])

    def test_time_sliced_without_replicas(self):
        self.assertRefused("""
            nodes:
              - name: a
                gpus: [{model: X, memory: 1GiB, sms: 1, mode: time-sliced}]
            """, ["replicas"])

    def test_mig_layout_larger_than_the_gpu(self):
        self.assertRefused("""
            nodes:
              - name: a
                gpus: [{model: X, memory: 80GiB, sms: 1, mode: mig, mig: [7g.80gb, 1g.10gb]}]
            """, ["8 compute slices"])

    def test_same_node_twice(self):
        self.assertRefused("""
            nodes:
              - {name: a}
              - {name: a}
            """, ["twice"])

    def test_more_gpus_than_the_fake_gpu_has(self):
        self.assertRefused("""
            nodes:
              - name: a
                gpus: [{model: X, memory: 1GiB, sms: 1, count: 17}]
            """, ["17 GPUs"])

    def test_unknown_key(self):
        self.assertRefused("""
            nodes:
              - name: a
                gpus: [{model: X, memory: 1GiB, sms: 1, colour: red}]
            """, ["colour"])


class DeployForHostProcesses(unittest.TestCase):
    """deploy/'s scheduler configuration and webhook, pointed at the host's tessera-scheduler
    (deploy/ names the Service tessera-scheduler.tessera-system.svc)."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.paths = type("Paths", (), {})()
        self.paths.pki = self.dir.name
        self.paths.kubeconfig = os.path.join(self.dir.name, "kubeconfig")
        self.paths.tool = lambda name: name
        with open(os.path.join(self.dir.name, "ca.crt"), "wb") as f:
            f.write(b"the dev cluster's CA\n")

    def tearDown(self):
        self.dir.cleanup()

    def test_the_extender_is_the_host_port_with_the_dev_clusters_ca(self):
        config = cluster.extender_config(self.paths, {"tesseraScheduler": 19443})
        self.assertEqual([p["schedulerName"] for p in config["profiles"]],
                         ["default-scheduler", "tessera-scheduler"])
        [extender] = config["extenders"]
        self.assertEqual(extender["urlPrefix"], "https://127.0.0.1:19443")
        self.assertEqual(extender["tlsConfig"], {"caFile": os.path.join(self.dir.name, "ca.crt")})
        self.assertEqual(extender["bindVerb"], "bind")
        self.assertIn("nvidia.com/gpumem", [r["name"] for r in extender["managedResources"]])

    def test_the_webhook_is_the_host_url_with_the_dev_clusters_ca(self):
        sent = []
        real_run = cluster.run
        cluster.run = lambda argv, **kwargs: sent.append((argv, kwargs))
        try:
            cluster.register_webhook(self.paths, {"ports": {"tesseraScheduler": 19443}})
        finally:
            cluster.run = real_run
        [(argv, kwargs)] = sent
        self.assertEqual(argv[-3:], ["apply", "-f", "-"])
        [hook] = yaml.safe_load(kwargs["input"])["webhooks"]
        self.assertEqual(hook["name"], "pods.tessera.io")
        self.assertEqual(hook["clientConfig"], {"url": "https://127.0.0.1:19443/webhook",
                                                "caBundle": "dGhlIGRldiBjbHVzdGVyJ3MgQ0EK"})
        self.assertEqual(hook["rules"][0]["resources"], ["pods"])


if __name__ == "__main__":
    unittest.main()
