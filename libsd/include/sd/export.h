#pragma once
// SD_API marks what libsd.so exports. The library is built with hidden symbol visibility
// (-fvisibility=hidden -fvisibility-inlines-hidden), so only what the public headers mark is
// visible to programs: classes whose members are called from outside (their vtables and typeinfo
// with them, so that sd::Error is caught by type and sd::Scheduler can be derived from) and free
// functions. Plain structs, inline functions and templates need no mark: they compile in the
// program. SD_LOCAL keeps a private nested type (Pipeline::Impl) of an exported class hidden.
#if defined(__GNUC__) || defined(__clang__)
#define SD_API __attribute__((visibility("default")))
#define SD_LOCAL __attribute__((visibility("hidden")))
#else
#define SD_API
#define SD_LOCAL
#endif
