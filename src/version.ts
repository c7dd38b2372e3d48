// The version of Pivot, shared by both commands and the library.
export const PIVOT_VERSION = "0.1.0";
