"""Running syncd: the assembled app, the daemon and its jobs, the HTTP listener, systemd
notification, logs, the demo."""
