"""Guest images: root disk, kernel bundle and the initramfs that joins them (guest)."""
