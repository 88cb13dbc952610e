"""Stand-in for google.colab._message: the error raised when the page's JavaScript fails."""


class MessageError(Exception):
    """Thrown on error response from frontend."""
