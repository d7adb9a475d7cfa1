"""The API error tree: each class knows its HTTP code and Kubernetes `Status` reason.

The API server turns any of these into a `Status` body once, at its edge; clients turn a `Status` back into
the same class with `from_status`. Store errors are mapped to these at the registry layer.
"""
from __future__ import annotations

from typing import Any


class APIError(Exception):
    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(APIError):
    code, reason = 400, "BadRequest"


class Unauthorized(APIError):
    code, reason = 401, "Unauthorized"


class Forbidden(APIError):
    code, reason = 403, "Forbidden"


class NotFound(APIError):
    code, reason = 404, "NotFound"

    @classmethod
    def of(cls, resource: str, name: str, group: str = "") -> "NotFound":
        qualified = f"{resource}.{group}" if group else resource
        return cls(f'{qualified} "{name}" not found',
                   details={"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource})


class MethodNotAllowed(APIError):
    code, reason = 405, "MethodNotAllowed"


class NotAcceptable(APIError):
    code, reason = 406, "NotAcceptable"


class AlreadyExists(APIError):
    code, reason = 409, "AlreadyExists"

    @classmethod
    def of(cls, resource: str, name: str, group: str = "") -> "AlreadyExists":
        qualified = f"{resource}.{group}" if group else resource
        return cls(f'{qualified} "{name}" already exists',
                   details={"name": name, "group": group, "kind": resource} if group else {"name": name, "kind": resource})


class Conflict(APIError):
    code, reason = 409, "Conflict"


class Gone(APIError):
    code, reason = 410, "Gone"


class Expired(APIError):
    code, reason = 410, "Expired"


class RequestEntityTooLarge(APIError):
    code, reason = 413, "RequestEntityTooLarge"


class UnsupportedMediaType(APIError):
    code, reason = 415, "UnsupportedMediaType"


class Invalid(APIError):
    """422: the object is well-formed but breaks a rule; `causes` name each field."""

    code, reason = 422, "Invalid"

    def __init__(self, kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> None:
        summary = ", ".join(
            f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes)
        qualified = f"{kind}.{group}" if group else kind
        message = f'{qualified} "{name}" is invalid: {summary}' if len(causes) == 1 else \
            f'{qualified} "{name}" is invalid: [{summary}]'
        details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
        if group:
            details["group"] = group
        super().__init__(message, details=details)
        self.causes = causes


class TooManyRequests(APIError):
    code, reason = 429, "TooManyRequests"


class InternalError(APIError):
    code, reason = 500, "InternalError"


class ServiceUnavailable(APIError):
    code, reason = 503, "ServiceUnavailable"


class Timeout(APIError):
    code, reason = 504, "Timeout"


def cause(field: str, message: str, reason: str = "FieldValueInvalid") -> dict[str, str]:
    """One entry of `details.causes`; reasons as in Kubernetes' field.ErrorType (FieldValueRequired...)."""
    return {"reason": reason, "message": message, "field": field}


_BY_REASON = {cls.reason: cls for cls in [
    BadRequest, Unauthorized, Forbidden, NotFound, MethodNotAllowed, NotAcceptable, AlreadyExists, Conflict,
    Gone, Expired, RequestEntityTooLarge, UnsupportedMediaType, TooManyRequests, InternalError,
    ServiceUnavailable, Timeout]}


def from_status(status: dict[str, Any]) -> APIError:
    """The client-side inverse of `APIError.status`."""
    reason = status.get("reason", "")
    message = status.get("message", "")
    details = status.get("details") or {}
    if reason == "Invalid":
        return Invalid(details.get("kind", ""), details.get("name", ""), details.get("causes", []),
                       details.get("group", ""))
    cls = _BY_REASON.get(reason, APIError)
    err = cls(message, details=details or None)
    if cls is APIError:
        err.code = int(status.get("code", 500))
    return err
