"""The code that runs inside the guest, shipped in its initramfs: the agent that
runs the host's commands, the offline stage of the check sequence (check_state)
and docker's store oracle (docker_store). Standard library only: it runs on the
guest's python3."""

CHECKER = "crashtest_guest.check_state"  # the module the host calls into
RESUME = "crashtest_guest.resume"  # what a guest resumed from a saved state runs first
DOCKER_CLI = "crashtest_guest.docker_cli"  # the daemon stage's image checks
