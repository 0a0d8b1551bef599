"""Salesforce CRM: Task history, identity look-ups and candidates, change watch, deletes."""
