#ifndef TRACEBRIDGE_CSQLITECONFIG_SHIM_H
#define TRACEBRIDGE_CSQLITECONFIG_SHIM_H
#include <sqlite3.h>

// sqlite3_config is variadic; Swift cannot call it. Only before SQLite initializes (the first
// connection opened); SQLITE_MISUSE after that.
static inline int tb_sqlite_config_memstatus(int on) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, on);
}
#endif
