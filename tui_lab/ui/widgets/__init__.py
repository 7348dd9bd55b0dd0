"""The lab's panels, one module each."""
