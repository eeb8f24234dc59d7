"""One router per resource; ``shapes`` holds what their answers share."""
