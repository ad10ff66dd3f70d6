"""What each lab-free connector says a target's name resolves to, the identity an approval
binds to: SSH hosts with the host key known_hosts holds for them, an Ansible target's
playbooks and inventory by content, an HTTP target's URL. (Docker, Kubernetes and
PostgreSQL identities are tested against the lab: tests/scenarios/test_approval_identity.py.)"""

from __future__ import annotations

from pathlib import Path

import paramiko

from diagnostics.ansible import AnsibleConnector, AnsibleSettings
from diagnostics.http import HttpConnector, HttpSettings
from diagnostics.sshconn import SshConnector, SshSettings
from runner.inventory import Target


def known_hosts_with(path: Path, name: str) -> str:
    key = paramiko.ECDSAKey.generate()
    path.write_text(f"{name} {key.get_name()} {key.get_base64()}\n")
    return str(key.fingerprint)


def test_ssh_identity_is_each_host_with_the_key_known_hosts_holds(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    first = known_hosts_with(known, "[10.0.0.7]:2222")
    settings = SshSettings(hosts=["10.0.0.7"], port=2222, user="ops", known_hosts=str(known),
                           ssh_config=str(tmp_path / "no-config"))
    target = Target("sync-hosts", "ssh", settings)
    identity = SshConnector().identity(target, 5)
    assert identity == {"host 10.0.0.7": f"ops@10.0.0.7:2222 [ecdsa-sha2-nistp256 {first}]"}
    second = known_hosts_with(known, "[10.0.0.7]:2222")  # another machine's key, swapped in
    assert first != second
    assert SshConnector().identity(target, 5) != identity


def test_ssh_identity_follows_the_jump_hosts(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    settings = SshSettings(host="app-1", user="ops", jump="ops@bastion:2200",
                           known_hosts=str(known), ssh_config=str(tmp_path / "no-config"))
    identity = SshConnector().identity(Target("app", "ssh", settings), 5)
    assert identity == {"host app-1": "ops@app-1:22 [no known key] via "
                                      "ops@bastion:2200 [no known key]"}


def test_ansible_identity_changes_with_any_playbook_or_inventory_content(tmp_path: Path) -> None:
    playbooks = tmp_path / "ansible"
    (playbooks / "roles" / "sync" / "tasks").mkdir(parents=True)
    (playbooks / "restart.yml").write_text("- hosts: all\n  roles: [sync]\n")
    task = playbooks / "roles" / "sync" / "tasks" / "main.yml"
    task.write_text("- ansible.builtin.command: /bin/true\n")
    hosts = tmp_path / "hosts.ini"
    hosts.write_text("sync-1\n")
    target = Target("sync-ansible", "ansible",
                    AnsibleSettings(playbook_dir=str(playbooks), inventory=str(hosts)))
    before = AnsibleConnector().identity(target, 5)
    assert before["playbook_dir"] == str(playbooks.resolve())
    assert before["inventory"] == str(hosts.resolve())
    task.write_text("- ansible.builtin.command: /bin/rm -rf /srv/sync\n")  # a role changed
    after_role = AnsibleConnector().identity(target, 5)
    assert after_role["playbook_dir_sha256"] != before["playbook_dir_sha256"]
    hosts.write_text("prod-db-1\n")
    after_hosts = AnsibleConnector().identity(target, 5)
    assert after_hosts["inventory_sha256"] != after_role["inventory_sha256"]


def test_http_identity_is_the_url() -> None:
    target = Target("status", "http", HttpSettings(url="https://status.example.com/health"))
    assert HttpConnector().identity(target, 5) == {"url": "https://status.example.com/health"}
