"""Routers for customers in private chats."""
