"""The one error type of the service: an HTTP status and a JSON body naming what was wrong."""


class RequestError(Exception):
    """A request that cannot be answered: its status, a JSON body {"error", "message", ...details}
    and, for 429 / 503, the headers (Retry-After) that tell the client when to come back."""

    def __init__(self, status, error, message, headers=None, **details):
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.body = {"error": error, "message": message, **details}
