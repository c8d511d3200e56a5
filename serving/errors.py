"""The error every serving module raises: a TF canonical code and a message for the client."""


class ServingError(Exception):
  """A request that cannot be served, with TF's canonical error code.

  code: a canonical code name ('INVALID_ARGUMENT', 'NOT_FOUND', 'DEADLINE_EXCEEDED',
  'RESOURCE_EXHAUSTED', 'UNIMPLEMENTED', 'INTERNAL', ...), the same names as grpc.StatusCode.
  http_status: set only where the local server answers with a status of its own (413).
  """

  def __init__(self, code, message, http_status=None):
    super().__init__(message)
    self.code = code
    self.message = message
    self.http_status = http_status


def invalid(message):
  return ServingError('INVALID_ARGUMENT', message)


def not_found(message):
  return ServingError('NOT_FOUND', message)
