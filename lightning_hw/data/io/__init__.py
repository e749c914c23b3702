"""Reading and fetching files: tables (:mod:`.files`), images (:mod:`.image_files`), downloads, Kaggle."""
