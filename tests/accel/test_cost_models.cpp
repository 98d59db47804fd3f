#include <gtest/gtest.h>

#include "strata/accel/cost_model.h"
