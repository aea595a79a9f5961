/*
 * vo_archive_cone: the order-29 NESTED HEALPix index ranges that cover a cone,
 * made in the server.
 *
 * healpix_cone_ranges(ra, dec, radius, rows) returns the rows (lo, hi) of the
 * half-open ranges [lo, hi) that vo_archive.sky.covering_ranges returns for
 * the cone in Python: the same cover (vo_archive/conecover.py, whose docstring
 * gives the method), the same choice of order from the radius and the table
 * size, the same caps on cells and ranges. The cone searches of the archive
 * join these rows to the B-tree on healpix29; computing them here spares the
 * client the work and the round trip of two arrays. Tests compare the two
 * implementations range for range on thousands of cones.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "funcapi.h"
#include "utils/tuplestore.h"

PG_MODULE_MAGIC;

#define ORDER 29
#define MAX_CELLS 160
#define MAX_RANGES 40

static const double TWO_THIRDS = 2.0 / 3.0;
static const double HALF_PI = 0.5 * M_PI;
static const double TWO_OVER_PI = 2.0 / M_PI;
static const double DEG = M_PI / 180.0;
/* radians added to every radius (pgSphere's comparisons allow 1e-9 rad) */
static const double PAD_RAD = 1e-8;
/* cell units added to every bound against rounding */
static const double PAD = 1e-6;
static const uint64 EVEN = UINT64CONST(0x5555555555555555);
static const uint64 ODD = UINT64CONST(0xAAAAAAAAAAAAAAAA);

typedef struct Cells
{
	int64	   *v;
	int			n;
	int			cap;
} Cells;

static void
cells_add(Cells *c, int64 cell)
{
	if (c->n == c->cap)
	{
		c->cap *= 2;
		c->v = repalloc(c->v, c->cap * sizeof(int64));
	}
	c->v[c->n++] = cell;
}

static int
cmp_int64(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/* sort and drop repeats */
static void
cells_finish(Cells *c)
{
	int			i,
				j = 0;

	qsort(c->v, c->n, sizeof(int64), cmp_int64);
	for (i = 0; i < c->n; i++)
		if (j == 0 || c->v[i] != c->v[j - 1])
			c->v[j++] = c->v[i];
	c->n = j;
}

/* the bits of v (< 2**32) on the even bit positions */
static inline uint64
spread(uint64 v)
{
	v &= UINT64CONST(0xFFFFFFFF);
	v = (v | (v << 16)) & UINT64CONST(0x0000FFFF0000FFFF);
	v = (v | (v << 8)) & UINT64CONST(0x00FF00FF00FF00FF);
	v = (v | (v << 4)) & UINT64CONST(0x0F0F0F0F0F0F0F0F);
	v = (v | (v << 2)) & UINT64CONST(0x3333333333333333);
	v = (v | (v << 1)) & UINT64CONST(0x5555555555555555);
	return v;
}

/* face of a belt cell from the face columns (0-4) of its jp and jm */
static inline int64
belt_face(int64 ifp, int64 ifm)
{
	if (ifp == ifm)
		return ifp | 4;
	return ifp < ifm ? ifp : ifm + 8;
}

typedef struct Shape
{
	double		z0;
	double		cos_r;
	double		cos_d;
	double		z_wide;
} Shape;

/* half a pole-free cone's longitude extent over z in [za, zb], in units of t */
static double
half_width(double za, double zb, const Shape *s)
{
	double		z = Min(Max(s->z_wide, za), zb);
	double		c = (s->cos_r - z * s->z0) / (sqrt(Max(1e-300, 1.0 - z * z)) * s->cos_d);

	return acos(Max(-1.0, Min(1.0, c))) * TWO_OVER_PI + PAD;
}

static void
belt_rows(Cells *cells, int order, double t, double z_lo, double z_hi,
		  const Shape *shape)
{
	int64		n = INT64CONST(1) << order;
	int64		mask = n - 1;
	int64		n4 = 4 * n,
				n5 = 5 * n;
	int			shift = 2 * order;
	double		k = 0.75 * n;
	double		u0 = k * z_lo - PAD,
				u1 = k * z_hi + PAD;
	int64		d,
				d_last = (int64) floor(2.0 * u1 + 1.0);

	for (d = (int64) ceil(2.0 * u0 - 1.0); d <= d_last; d++)
	{
		double		ua = Max(0.5 * (d - 1), u0),
					ub = Min(0.5 * (d + 1), u1);
		double		sa,
					sb,
					u,
					g;
		int64		first,
					last;

		if (shape == NULL)
		{
			sa = 0.5 * n - PAD;
			sb = 4.5 * n + PAD;
		}
		else
		{
			double		za = Min(Max(ua / k, z_lo), z_hi);
			double		zb = Max(Min(ub / k, z_hi), za);
			double		half = half_width(za, zb, shape);

			if (half >= 2.0)
			{
				sa = 0.5 * n - PAD;
				sb = 4.5 * n + PAD;
			}
			else
			{
				sa = n * (0.5 + t - half) - PAD;
				sb = n * (0.5 + t + half) + PAD;
			}
		}
		/* the cell (jp, jp + d) spans s from jp + g to jp + 1 + d - g */
		u = Min(Max(0.5 * d, ua), ub);
		g = Max(u, d - u);
		first = 2 * (int64) ceil(sa - 1.0 - d + g) + d;
		last = 2 * (int64) floor(sb - g) + d;
		if (((first - d) >> 1) > n && ((last + d) >> 1) < n4 - 1)
		{
			/* away from t = 0 each cell has one form: step along the row */
			int64		jp = (first - d) >> 1,
						jm = (first + d) >> 1;
			int64		steps = (last - first) >> 1;

			while (steps >= 0)
			{
				int64		base = belt_face(jp >> order, jm >> order) << shift;
				int64		x = jm & mask,
							y = n - (jp & mask) - 1;
				uint64		sx = spread(x),
							sy = spread(y) << 1;
				int64		run = Min(steps, Min(mask - x, y));
				int64		i;

				cells_add(cells, base | (int64) (sx | sy));
				for (i = 0; i < run; i++)
				{
					sx = ((sx | ODD) + 1) & EVEN;
					sy = (sy - 2) & ODD;
					cells_add(cells, base | (int64) (sx | sy));
				}
				jp += run + 1;
				jm += run + 1;
				steps -= run + 1;
			}
			continue;
		}
		for (int64 total = first; total <= last; total += 2)
		{
			int64		jp = (total - d) >> 1,
						jm = (total + d) >> 1;
			int64		forms[3][2] = {{jp, jm}, {jp + n4, jm + n4}, {jp - n4, jm - n4}};

			for (int f = 0; f < 3; f++)
			{
				int64		a = forms[f][0],
							b = forms[f][1];

				if (a < 0 || b < 0 || a >= n5 || b >= n5 || (b > a ? b - a : a - b) > n)
					continue;
				cells_add(cells, belt_face(a >> order, b >> order) << shift
						  | (int64) spread(b & mask)
						  | (int64) (spread(n - (a & mask) - 1) << 1));
			}
		}
	}
}

static void
cap_rows(Cells *cells, int order, bool north, double t, double z_lo,
		 double z_hi, const Shape *shape)
{
	int64		n = INT64CONST(1) << order;
	int			shift = 2 * order;
	double		a_lo = north ? z_lo : -z_hi;
	double		a_hi = north ? z_hi : -z_lo;
	double		w0 = n * sqrt(Max(0.0, 3.0 * (1.0 - a_hi))) - PAD;
	double		w1 = n * sqrt(Max(0.0, 3.0 * (1.0 - a_lo))) + PAD;
	double		inv3n2 = 1.0 / (3.0 * n * n);
	int64		total,
				total_last = Min(2 * n - 2, (int64) floor(w1));

	for (total = Max(0, (int64) floor(w0) - 1); total <= total_last; total++)
	{
		double		wa = Max((double) total, w0),
					wb = Min(total + 2.0, w1);
		double		t_lo,
					t_hi;
		int64		q,
					q_last;

		if (shape == NULL)
		{
			t_lo = 0.0;
			t_hi = 4.0 - 1e-12;
		}
		else
		{
			double		za = 1.0 - wb * wb * inv3n2;
			double		wa0 = Max(wa, 0.0);
			double		zb = 1.0 - wa0 * wa0 * inv3n2;
			double		half;

			if (!north)
			{
				double		tmp = za;

				za = -zb;
				zb = -tmp;
			}
			za = Min(Max(za, z_lo), z_hi);
			zb = Max(Min(zb, z_hi), za);
			half = half_width(za, zb, shape);
			if (half >= 2.0)
			{
				t_lo = 0.0;
				t_hi = 4.0 - 1e-12;
			}
			else
			{
				t_lo = t - half;
				t_hi = t + half;
			}
		}
		q_last = (int64) floor(t_hi);
		for (q = (int64) floor(t_lo); q <= q_last; q++)
		{
			double		tp0 = Max(t_lo - q, 0.0);
			double		tp1 = Min(t_hi - q, 1.0);
			int64		base,
						jm_lo,
						jm_hi,
						lo,
						hi,
						jp;

			if (tp0 > tp1)
				continue;
			base = (north ? (q & 3) : 8 + (q & 3)) << shift;
			jm_lo = Max(0, (int64) floor((1.0 - tp1) * wa - PAD));
			jm_hi = Min(n - 1, (int64) floor((1.0 - tp0) * wb + PAD));
			lo = Max(Max(0, (int64) floor(tp0 * wa - PAD)), total - jm_hi);
			hi = Min(Min(n - 1, (int64) floor(tp1 * wb + PAD)), total - jm_lo);
			for (jp = lo; jp <= hi; jp++)
			{
				int64		jm = total - jp;

				if (north)
					cells_add(cells, base | (int64) spread(n - jm - 1)
							  | (int64) (spread(n - jp - 1) << 1));
				else
					cells_add(cells, base | (int64) spread(jp)
							  | (int64) (spread(jm) << 1));
			}
		}
	}
}

/* the cells of a small cone within one face (at most 2 x 2); false if not so */
static bool
few_cells(Cells *out, int order, int64 n, double t, double z_lo, double z_hi,
		  double r, double cos_d)
{
	double		half = asin(Min(1.0, sin(r) / cos_d)) * TWO_OVER_PI + PAD;

	if (z_lo > -TWO_THIRDS && z_hi < TWO_THIRDS)
	{
		double		s0 = n * (0.5 + t - half) - PAD;
		double		s1 = n * (0.5 + t + half) + PAD;
		double		u0 = 0.75 * n * z_lo - PAD;
		double		u1 = 0.75 * n * z_hi + PAD;
		int64		p_lo = (int64) floor(s0 - u1),
					p_hi = (int64) floor(s1 - u0);
		int64		m_lo = (int64) floor(s0 + u0),
					m_hi = (int64) floor(s1 + u1);
		int64		ifp = p_lo >> order,
					ifm = m_lo >> order;
		int64		base,
					mask = n - 1;

		if (p_lo <= n || m_hi >= 4 * n || (p_hi >> order) != ifp
			|| (m_hi >> order) != ifm || p_hi - p_lo > 1 || m_hi - m_lo > 1)
			return false;
		base = belt_face(ifp, ifm) << (2 * order);
		for (int64 jp = p_lo; jp <= p_hi; jp++)
		{
			int64		iy = (int64) (spread(n - (jp & mask) - 1) << 1);

			for (int64 jm = m_lo; jm <= m_hi; jm++)
			{
				if (0.5 * (jp + jm) + 1.0 < s0 || 0.5 * (jp + jm) > s1
					|| 0.5 * (jm - jp) + 0.5 < u0 || 0.5 * (jm - jp) - 0.5 > u1)
					continue;
				cells_add(out, base | (int64) spread(jm & mask) | iy);
			}
		}
	}
	else if (z_lo > TWO_THIRDS || z_hi < -TWO_THIRDS)
	{
		int64		q = (int64) floor(t - half);
		double		tp0,
					tp1,
					za_lo,
					za_hi,
					w0,
					w1;
		bool		north;
		int64		p_lo,
					p_hi,
					m_lo,
					m_hi,
					base;

		if (q < 0 || q != (int64) floor(t + half))
			return false;
		tp0 = t - half - q;
		tp1 = t + half - q;
		north = z_lo > 0.0;
		za_lo = north ? z_lo : -z_hi;
		za_hi = north ? z_hi : -z_lo;
		w0 = n * sqrt(3.0 * (1.0 - za_hi)) - PAD;
		w1 = n * sqrt(3.0 * (1.0 - za_lo)) + PAD;
		p_lo = Max(0, (int64) floor(tp0 * w0 - PAD));
		p_hi = Min(n - 1, (int64) floor(tp1 * w1 + PAD));
		m_lo = Max(0, (int64) floor((1.0 - tp1) * w0 - PAD));
		m_hi = Min(n - 1, (int64) floor((1.0 - tp0) * w1 + PAD));
		if (p_hi - p_lo > 1 || m_hi - m_lo > 1)
			return false;
		base = (north ? q : q + 8) << (2 * order);
		for (int64 jp = p_lo; jp <= p_hi; jp++)
			for (int64 jm = m_lo; jm <= m_hi; jm++)
			{
				if (jp + jm > w1 || jp + jm + 2 < w0)
					continue;
				if (north)
					cells_add(out, base | (int64) spread(n - jm - 1)
							  | (int64) (spread(n - jp - 1) << 1));
				else
					cells_add(out, base | (int64) spread(jp)
							  | (int64) (spread(jm) << 1));
			}
	}
	else
		return false;
	cells_finish(out);
	return true;
}

/* sorted cells at order covering the cone; false when they would be too many */
static bool
cone_cells(Cells *cells, double ra, double dec, double radius_deg, int order)
{
	int64		n = INT64CONST(1) << order;
	double		r = radius_deg * DEG + PAD_RAD;
	double		d,
				z0,
				z_lo,
				z_hi,
				t,
				ra_m;
	bool		pole;
	Shape		shape;

	cells->n = 0;
	if (r >= HALF_PI)
		return false;
	d = Max(-90.0, Min(90.0, dec)) * DEG;
	z0 = sin(d);
	z_lo = d - r <= -HALF_PI ? -1.0 : sin(d - r);
	z_hi = d + r >= HALF_PI ? 1.0 : sin(d + r);
	pole = z_lo == -1.0 || z_hi == 1.0;
	ra_m = fmod(ra, 360.0);
	if (ra_m < 0.0)
		ra_m += 360.0;
	t = ra_m / 90.0;
	shape.z0 = z0;
	shape.cos_r = cos(r);
	shape.z_wide = z0 / shape.cos_r;
	shape.cos_d = sqrt(Max(0.0, 1.0 - z0 * z0));
	if (!pole && r * n < 0.5)
	{
		if (few_cells(cells, order, n, t, z_lo, z_hi, r, shape.cos_d))
			return true;
		cells->n = 0;
	}
	/* a rough count of the cells first: the cone's area in cells, doubled */
	{
		double		a = r * n * 1.2;

		if (2.0 * (a * a) * M_PI > 2.0 * MAX_CELLS)
			return false;
	}
	if (z_lo < TWO_THIRDS && z_hi > -TWO_THIRDS)
		belt_rows(cells, order, t, Max(z_lo, -TWO_THIRDS), Min(z_hi, TWO_THIRDS),
				  pole ? NULL : &shape);
	if (z_hi > TWO_THIRDS)
		cap_rows(cells, order, true, t, Max(z_lo, TWO_THIRDS), z_hi,
				 pole ? NULL : &shape);
	if (z_lo < -TWO_THIRDS)
		cap_rows(cells, order, false, t, z_lo, Min(z_hi, -TWO_THIRDS),
				 pole ? NULL : &shape);
	cells_finish(cells);
	return cells->n <= 2 * MAX_CELLS;
}

/* (expected rows in the cone, cell size as a fraction of the radius) */
static const double CELL_PER_RADIUS[][2] = {
	{0.6, 4.0}, {1.8, 2.0}, {13.0, 1.0}, {66.0, 0.5}, {270.0, 0.25}
};
static const double SKY_DEG2 = 41252.96125;

static int
order_for(double radius_deg, double rows)
{
	double		radius = Max(radius_deg, 1e-9);
	double		expected = rows * M_PI * radius * radius / SKY_DEG2;
	double		cell = 0.125 * radius;
	double		order;

	for (int i = 0; i < (int) lengthof(CELL_PER_RADIUS); i++)
		if (expected <= CELL_PER_RADIUS[i][0])
		{
			cell = CELL_PER_RADIUS[i][1] * radius;
			break;
		}
	order = rint(log2(58.6 / cell));	/* half to even, as Python's round */
	return (int) Max(0.0, Min((double) ORDER, order));
}

/* cells_to_ranges: the number of ranges, written to lo/hi when given */
static int
to_ranges(const Cells *cells, int order, int64 *lo_out, int64 *hi_out)
{
	int			shift = 2 * (ORDER - order);
	int			count = 0;
	int64		lo = cells->v[0],
				hi = cells->v[0];

	for (int i = 0; i < cells->n; i++)
	{
		int64		p = cells->v[i];

		if (p > hi + 1)
		{
			if (lo_out)
			{
				lo_out[count] = lo << shift;
				hi_out[count] = (hi + 1) << shift;
			}
			count++;
			lo = p;
		}
		hi = p;
	}
	if (lo_out)
	{
		lo_out[count] = lo << shift;
		hi_out[count] = (hi + 1) << shift;
	}
	return count + 1;
}

/*
 * cone_cells from the order k down: the order whose cells were taken, or -1
 * when none would do (a radius within the padding of 90 degrees)
 */
static int
cone_cells_from(Cells *cells, double ra, double dec, double radius, int k)
{
	while (!cone_cells(cells, ra, dec, radius, k))
		if (--k < 0)
			return -1;
	return k;
}

PG_FUNCTION_INFO_V1(healpix_cone_ranges);

Datum
healpix_cone_ranges(PG_FUNCTION_ARGS)
{
	double		ra = PG_GETARG_FLOAT8(0);
	double		dec = PG_GETARG_FLOAT8(1);
	double		radius = PG_GETARG_FLOAT8(2);
	double		rows = PG_GETARG_FLOAT8(3);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		lo[2 * MAX_CELLS + 1],
				hi[2 * MAX_CELLS + 1];
	int			count;
	int			k = -1;			/* the cells' order; -1: the whole sky */

	InitMaterializedSRF(fcinfo, 0);
	if (isnan(ra) || isnan(dec) || isnan(radius) || isnan(rows)
		|| isinf(ra) || radius < 0.0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("healpix_cone_ranges: the centre must be finite and the radius at least 0")));
	if (radius < 90.0)
	{
		Cells		cells;

		cells.cap = 64;
		cells.n = 0;
		cells.v = palloc(cells.cap * sizeof(int64));
		k = cone_cells_from(&cells, ra, dec, radius, order_for(radius, rows));
		if (k >= 0 && to_ranges(&cells, k, NULL, NULL) > MAX_RANGES)
			k = cone_cells_from(&cells, ra, dec, radius, order_for(radius, rows) - 1);
		if (k >= 0)
			count = to_ranges(&cells, k, lo, hi);
		pfree(cells.v);
	}
	if (k < 0)
	{
		lo[0] = 0;
		hi[0] = INT64CONST(12) << (2 * ORDER);
		count = 1;
	}
	for (int i = 0; i < count; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = Int64GetDatum(lo[i]);
		values[1] = Int64GetDatum(hi[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
