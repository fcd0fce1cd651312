"""Webhooks, Standard Webhooks style: signing (`signing`), the URL policy against server-side
request forgery (`urls`), the body (`payload`) and the worker's sender (`sender`).

Which events a task change sends is the domain's (`wanserve.domain.deliveries`); the journal
queues them in the store. Nothing is imported here, so `settings` can use `signing` cheaply.
"""
