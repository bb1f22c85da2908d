"""The error types of the service: a request that gets an HTTP error, a client that went away."""


class RequestError(Exception):
    """A request that cannot be answered: its status, a JSON body {"error", "message", ...details}
    and, for 429 / 503, the headers (Retry-After) that tell the client when to come back."""

    def __init__(self, status, error, message, headers=None, **details):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.body = {"error": error, "message": message, **details}


class ClientGone(Exception):
    """The client closed its connection while its request waited."""
