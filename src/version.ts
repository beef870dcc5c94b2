/** The tsvs release, as `tsvs --version` and `tsvsd --version` print it. */
export const VERSION = '0.1.0';
