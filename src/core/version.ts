/** The version of Custos, shown by `custos --version`, the API's OpenAPI document and /healthz. */
export const VERSION = '0.1.0';
