"""One-to-many (English into many languages) LibreOffice help + UI recipe."""
