"""The HTTP shell: translates HTTP to core calls and back."""
