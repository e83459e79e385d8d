"""Invoice outputs, all after commit and lock-free: the PDF (WeasyPrint), e-mail (SMTP), thermal receipts (ESC/POS)."""
