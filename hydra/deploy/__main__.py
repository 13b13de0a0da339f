"""``python -m hydra.deploy``: print the folder that holds grafana/ and systemd/."""

from hydra.deploy import deploy_dir

print(deploy_dir())
