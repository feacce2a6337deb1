"""Callback data, keyboards and message rendering shared by the routers and the notification worker."""
