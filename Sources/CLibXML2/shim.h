#ifndef TRACEBRIDGE_CLIBXML2_SHIM_H
#define TRACEBRIDGE_CLIBXML2_SHIM_H

/* Debian's libxml2 is built with ICU, so <libxml/encoding.h> includes the system's
   <unicode/ucnv.h>, whose UErrorCode clashes with the ICU copy inside Foundation
   (_FoundationICU) in any module that imports both. We never touch an encoding handler's
   fields (bodies reach libxml2 as UTF-8 already), so hide the ICU part of those headers. */
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>

#endif
